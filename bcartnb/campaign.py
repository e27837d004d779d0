"""A campaign: the contract's keys, checked once, the same from TOML, papermill and the wizard.

A campaign file (TOML) and the papermill notebook take the same keys: ``members``, ``filter``,
``checked``, ``template``, ``subject``, ``body``, ``html``, ``insert_signature``,
``opt_in_only``, ``encoding``, ``send``. Keeping them in one frozen object means the three
ways of driving a campaign cannot drift apart: each builds a :class:`CampaignSpec` and hands
it to the same functions.
"""

from __future__ import annotations

import json
import os
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bcartnb.exceptions import SettingsError

__all__ = ["CAMPAIGN_KEYS", "ENCODINGS", "CampaignSpec", "load_campaign"]

CAMPAIGN_KEYS = (
    "members",
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
)
ENCODINGS = ("utf-8", "iso-2022-jp")


@dataclass(frozen=True)
class CampaignSpec:
    """What to send to whom. ``send`` is False unless somebody asked for it explicitly."""

    members: Path
    filter: dict[str, Any] = field(default_factory=dict)
    checked: tuple[int, ...] = ()
    template: str | None = None
    subject: str | None = None
    body: str | None = None
    html: bool | None = None
    insert_signature: bool = True
    opt_in_only: bool = False
    encoding: str = "utf-8"
    send: bool = False

    @classmethod
    def from_mapping(
        cls, data: Mapping[str, Any], base: Path | None = None, where: str = "campaign"
    ) -> CampaignSpec:
        """Check every key and type once; a relative ``members`` path is relative to ``base``."""
        unknown = sorted(set(data) - set(CAMPAIGN_KEYS))
        if unknown:
            raise SettingsError(
                f"{where}: unknown key {unknown[0]!r} (known: {', '.join(CAMPAIGN_KEYS)})"
            )
        if not data.get("members"):
            raise SettingsError(f"{where}: key 'members' is required (the member CSV)")
        members = _typed(data, "members", (str, os.PathLike), where)
        path = Path(members).expanduser()
        if base is not None and not path.is_absolute():
            path = base / path
        kw: dict[str, Any] = {"members": path}

        flt = data.get("filter")
        if isinstance(flt, str):
            try:
                flt = json.loads(flt) if flt.strip() else {}
            except json.JSONDecodeError as err:
                raise SettingsError(f"{where}: filter is not valid JSON: {err}") from err
        if flt is None:
            flt = {}
        if not isinstance(flt, Mapping):
            raise SettingsError(f"{where}: filter must be a table/dict, not {flt!r}")
        kw["filter"] = dict(flt)

        kw["checked"] = _checked(data.get("checked"), where)
        for key in ("template", "subject", "body"):
            if data.get(key) is not None:
                kw[key] = _typed(data, key, str, where)
        if kw.get("template") == "":
            kw["template"] = None
        if data.get("html") is not None:
            kw["html"] = _typed(data, "html", bool, where)
        for key in ("insert_signature", "opt_in_only", "send"):
            if data.get(key) is not None:
                kw[key] = _typed(data, key, bool, where)
        if data.get("encoding") is not None:
            enc = _typed(data, "encoding", str, where).lower().replace("_", "-")
            if enc == "utf8":
                enc = "utf-8"
            if enc not in ENCODINGS:
                raise SettingsError(
                    f"{where}: encoding must be one of {', '.join(ENCODINGS)}, not {enc!r}"
                )
            kw["encoding"] = enc
        if kw.get("template") is None and (kw.get("subject") is None or kw.get("body") is None):
            raise SettingsError(f"{where}: give a template, or both subject and body")
        return cls(**kw)

    def to_params(self) -> dict[str, Any]:
        """JSON-ready keys for the ledger, the fingerprint and the report (``send`` left out)."""
        return {
            "members": str(self.members),
            "filter": self.filter,
            "checked": list(self.checked),
            "template": self.template,
            "subject": self.subject,
            "body": self.body,
            "html": self.html,
            "insert_signature": self.insert_signature,
            "opt_in_only": self.opt_in_only,
            "encoding": self.encoding,
        }


def load_campaign(path: str | os.PathLike[str]) -> CampaignSpec:
    """Read a campaign TOML file; paths inside it are relative to the file."""
    p = Path(path)
    try:
        with p.open("rb") as fh:
            data = tomllib.load(fh)
    except FileNotFoundError as err:
        raise SettingsError(f"{p}: campaign file not found") from err
    except tomllib.TOMLDecodeError as err:
        raise SettingsError(f"{p}: not valid TOML: {err}") from err
    return CampaignSpec.from_mapping(data, base=p.resolve().parent, where=str(p))


def _typed(data: Mapping[str, Any], key: str, kind: type | tuple[type, ...], where: str) -> Any:
    value = data[key]
    if isinstance(value, bool) and kind is not bool:
        raise SettingsError(f"{where}: {key} has the wrong type: {value!r}")
    if not isinstance(value, kind):
        raise SettingsError(f"{where}: {key} has the wrong type: {value!r}")
    return value


def _checked(value: Any, where: str) -> tuple[int, ...]:
    if value is None or value == "" or value == []:
        return ()
    items: Sequence[Any]
    if isinstance(value, str):
        items = [v.strip() for v in value.split(",") if v.strip()]
    elif isinstance(value, Sequence):
        items = value
    else:
        raise SettingsError(f"{where}: checked must be a list of member ids, not {value!r}")
    out: list[int] = []
    for item in items:
        if isinstance(item, bool) or (isinstance(item, float) and not item.is_integer()):
            raise SettingsError(f"{where}: checked holds a non-id value {item!r}")
        try:
            out.append(int(item))
        except (TypeError, ValueError) as err:
            raise SettingsError(f"{where}: checked holds a non-id value {item!r}") from err
    return tuple(dict.fromkeys(out))
