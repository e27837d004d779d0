"""A campaign's keys, checked once into a frozen :class:`CampaignSpec`.

The campaign file, the papermill notebook's parameters and the wizard's choices all pass
through :meth:`CampaignSpec.from_mapping`, so a key means the same thing from every face and
a bad one is refused with the same words before anything is read or planned.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bcartnb.campaign.results import check_results_key
from bcartnb.exceptions import SettingsError
from bcartnb.segments import check_segment_name
from bcartnb.settings import check_keys, check_type, read_toml

__all__ = ["CAMPAIGN_KEYS", "ENCODINGS", "CampaignSpec", "load_campaign"]

CAMPAIGN_KEYS = (
    "members",
    "orders",
    "segment",
    "results",
    "filter",
    "checked",
    "template",
    "subject",
    "body",
    "html",
    "insert_signature",
    "opt_in_only",
    "encoding",
    "send",
    "track",
)
ENCODINGS = ("utf-8", "iso-2022-jp")
#: Keys the ledger records beside a campaign's own (:meth:`CampaignPlan.ledger_params`),
#: left out when its parameters are read back into a spec (a resume, a report).
RECORDED_KEYS = ("orders_snapshot",)


@dataclass(frozen=True)
class CampaignSpec:
    """What to send to whom. ``send`` is False unless somebody asked for it explicitly."""

    members: Path
    filter: dict[str, Any] = field(default_factory=dict)
    #: the 受注 CSV whose purchase columns (最終購入日, 顧客グループ, …) the filter may use
    orders: Path | None = None
    #: a saved filter's name (セグメント); :func:`~bcartnb.campaign.plan_campaign` ANDs it
    #: into ``filter``
    segment: str | None = None
    #: a sent campaign's id: its results (配信, 開封, クリック) become columns the filter
    #: takes, e.g. ``{"開封": false}`` (:mod:`~bcartnb.campaign.results`)
    results: str | None = None
    checked: tuple[int, ...] = ()
    template: str | None = None
    subject: str | None = None
    body: str | None = None
    html: bool | None = None
    insert_signature: bool = True
    opt_in_only: bool = False
    encoding: str = "utf-8"
    send: bool = False
    #: False: no click or open measurement in this campaign's mails (on by the shop's
    #: ``[tracking] url`` otherwise)
    track: bool = True

    @classmethod
    def from_mapping(
        cls, data: Mapping[str, Any], base: Path | None = None, where: str = "campaign"
    ) -> CampaignSpec:
        """Check every key and type once; a relative ``members`` path is relative to ``base``."""
        data = {k: v for k, v in data.items() if k not in RECORDED_KEYS}
        check_keys(data, CAMPAIGN_KEYS, where)
        if not data.get("members"):
            raise SettingsError(
                f"{where}: key 'members' is required (the member CSV)",
                ja=f"キャンペーンファイル {where} に members（会員CSVのパス）がありません。",
            )
        members = check_type(data, "members", (str, os.PathLike), where)
        path = Path(members).expanduser()
        if base is not None and not path.is_absolute():
            path = base / path
        # absolute in the ledger: a campaign must resume from any folder
        path = Path(os.path.abspath(path))
        kw: dict[str, Any] = {"members": path}
        if data.get("orders"):
            orders = Path(check_type(data, "orders", (str, os.PathLike), where)).expanduser()
            if base is not None and not orders.is_absolute():
                orders = base / orders
            kw["orders"] = Path(os.path.abspath(orders))

        flt = data.get("filter")
        if isinstance(flt, str):
            try:
                flt = json.loads(flt) if flt.strip() else {}
            except json.JSONDecodeError as err:
                raise SettingsError(
                    f"{where}: filter is not valid JSON: {err}",
                    ja=f"{where} の filter（絞込条件）の JSON が読めません。",
                ) from err
        if flt is None:
            flt = {}
        if not isinstance(flt, Mapping):
            raise SettingsError(
                f"{where}: filter must be a table/dict, not {flt!r}",
                ja=f"{where} の filter（絞込条件）は表（[filter]）か辞書で書いてください（{flt!r}"
                " ではなく）。",
            )
        kw["filter"] = dict(flt)
        if data.get("segment") is not None and data.get("segment") != "":
            kw["segment"] = check_segment_name(check_type(data, "segment", str, where))

        if data.get("results") is not None and data.get("results") != "":
            kw["results"] = check_results_key(data.get("results"), where)
        kw["checked"] = _checked(data.get("checked"), where)
        for key in ("template", "subject", "body"):
            if data.get(key) is not None:
                kw[key] = check_type(data, key, str, where)
        if kw.get("template") == "":
            kw["template"] = None
        if data.get("html") is not None:
            kw["html"] = check_type(data, "html", bool, where)
        for key in ("insert_signature", "opt_in_only", "send", "track"):
            if data.get(key) is not None:
                kw[key] = check_type(data, key, bool, where)
        if data.get("encoding") is not None:
            enc = check_type(data, "encoding", str, where).lower().replace("_", "-")
            if enc == "utf8":
                enc = "utf-8"
            if enc not in ENCODINGS:
                raise SettingsError(
                    f"{where}: encoding must be one of {', '.join(ENCODINGS)}, not {enc!r}",
                    ja=f"{where} の encoding は utf-8 か iso-2022-jp にしてください"
                    f"（{enc!r} は使えません）。",
                )
            kw["encoding"] = enc
        if kw.get("template") is None and (kw.get("subject") is None or kw.get("body") is None):
            raise SettingsError(
                f"{where}: give a template, or both subject and body",
                ja=f"{where} にテンプレート（template）か、"
                "件名（subject）と本文（body）の両方を書いてください。",
            )
        return cls(**kw)

    def to_params(self) -> dict[str, Any]:
        """JSON-ready keys for the ledger, the fingerprint and the report (``send`` left out).

        ``segment`` appears only while unresolved: a planned campaign records the segment's
        filter itself (see :func:`~bcartnb.campaign.resolve_segment`), so its fingerprint and
        its resume do not depend on the segments file, and campaigns without one keep their old
        fingerprints.
        """
        return {
            "members": str(self.members),
            **({"orders": str(self.orders)} if self.orders else {}),
            **({"segment": self.segment} if self.segment else {}),
            **({"results": self.results} if self.results else {}),
            "filter": self.filter,
            "checked": list(self.checked),
            "template": self.template,
            "subject": self.subject,
            "body": self.body,
            "html": self.html,
            "insert_signature": self.insert_signature,
            "opt_in_only": self.opt_in_only,
            "encoding": self.encoding,
            **({} if self.track else {"track": False}),
        }


def load_campaign(path: str | os.PathLike[str]) -> CampaignSpec:
    """Read a campaign TOML file; paths inside it are relative to the file."""
    p = Path(path)
    data = read_toml(p, "campaign file")
    return CampaignSpec.from_mapping(data, base=p.resolve().parent, where=str(p))


def _checked(value: Any, where: str) -> tuple[int, ...]:
    if value is None or value == "" or value == []:
        return ()
    items: Sequence[Any]
    if isinstance(value, str):
        items = [v.strip() for v in value.split(",") if v.strip()]
    elif isinstance(value, Sequence):
        items = value
    else:
        raise SettingsError(
            f"{where}: checked must be a list of member ids, not {value!r}",
            ja=f"{where} の checked（チェックした会員）は会員IDのリストで書いてください（{value!r}"
            " ではなく）。",
        )
    out: list[int] = []
    for item in items:
        if isinstance(item, bool) or (isinstance(item, float) and not item.is_integer()):
            raise SettingsError(
                f"{where}: checked holds a non-id value {item!r}",
                ja=f"{where} の checked に会員IDでない値 {item!r} があります。",
            )
        try:
            out.append(int(item))
        except (TypeError, ValueError) as err:
            raise SettingsError(
                f"{where}: checked holds a non-id value {item!r}",
                ja=f"{where} の checked に会員IDでない値 {item!r} があります。",
            ) from err
    return tuple(dict.fromkeys(out))
