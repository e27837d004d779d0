"""Did the mail work? One campaign's 開封・クリック, broken down, and the segments made from it.

Every face asks here: ``bcartnb results`` (text, JSON, CSV), the campaign report's 開封・クリック
section, the wizard's history, and a follow-up campaign's ``results`` key. The counts are
people, never machines (what mail gateways and scanners fetched is counted apart, by the rules
of :mod:`bcartnb.hygiene.tracking_server` and :mod:`bcartnb.ledger.tracking`), and every rate
is over the mails delivered (配信数: state ``sent``).

Rules the numbers keep (said beside them as :data:`LIMITS_JA`):

* a member who clicked opened the mail, image shown or not;
* a member whose only opens or clicks were a machine's did **not** open or click;
* a text-only mail has no open image: its opens are not measured (:attr:`CampaignResults.
  opens_measured` is False) and only its clicks say anything.

Segments from results (the campaign key ``results = "ID"``, ``bcartnb members --results ID``,
the wizard's 配信結果): the member frame gains three columns the filter takes like any other
(:data:`RESULT_COLUMNS`), one row per member of the file:

* ``配信``: True when campaign ID's mail was delivered to the member (else False);
* ``開封``: True/False for the members it was delivered to, when its opens were measured;
  blank otherwise (not delivered, a text-only mail, no measuring);
* ``クリック``: the same for clicks (blank when the mail had no tracked link).

So ``{"開封": false}`` is 開封しなかった会員, ``{"開封": true}`` 開封した会員 and
``{"クリック": true}`` リンクをクリックした会員. A text-only mail's recipients are never among
those who did not open, since nobody can know (their 開封 is blank); a marketer who means them
asks for it: ``{"配信": true, "開封": [false, null]}``. A filter naming 開封 (or クリック) of a
campaign that did not measure it is refused rather than answered with nobody.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Final

import numpy as np
import pandas as pd

from bcartnb.exceptions import (
    BcartnbError,
    CampaignStateError,
    FilterError,
    InputError,
    SettingsError,
)
from bcartnb.filters import resolve_column
from bcartnb.ledger import Ledger, TrackResults
from bcartnb.ledger import reading as ledger_reading
from bcartnb.members import read_members
from bcartnb.settings import Settings

__all__ = [
    "LIMITS_JA",
    "RESULT_COLUMNS",
    "CampaignResults",
    "campaign_breakdown",
    "check_results_filter",
    "check_results_key",
    "history_rate_text",
    "history_results",
    "members_with_results",
    "members_without_results",
    "rate_text",
    "results_history",
    "tracking_measured",
    "with_rates",
]

#: What the numbers cannot see, said wherever they are shown.
LIMITS_JA: Final = (
    "※ 開封は、メールの画像が表示されたときだけ数えられます（画像を表示しない設定の人、"
    "テキストメールは数えられません）。Apple メールのプライバシー保護は届いたメールの画像を"
    "すべて読み込むため、開かれていなくても開封に数えられることがあります。"
    "リンクをクリックした人は開封にも数えます。メールゲートウェイなど機械によるアクセスは"
    "人数にも率にも含めません（機械だけが開いた会員は「開封しなかった」に入ります）。"
)
#: The columns ``results = "ID"`` adds to the member frame, for the filter.
RESULT_COLUMNS: Final = ("配信", "開封", "クリック")
_ID_RE: Final = re.compile(r"[0-9A-Za-z_-]{1,64}")
#: Hours since sending shown one by one; after them, one bucket a day.
HOURLY: Final = 48


def rate_text(rate: float) -> str:
    """A rate as the marketer reads it: ``33.3%``."""
    return f"{rate * 100:.1f}%"


def history_rate_text(value: Any) -> str:
    """A rate of the send history (:func:`with_rates`) as every face shows it: ``—`` for a
    campaign that measured nothing (NaN or None), so "not measured" never reads as 0%."""
    return "—" if value is None or pd.isna(value) else rate_text(float(value))


def history_results(row: pd.Series | Mapping[str, Any]) -> dict[str, int | float | None]:
    """One row of the send history's results for JSON (``bcartnb campaigns --json``):
    ``opened``, ``open_rate``, ``clicked``, ``click_rate``, each None where the campaign
    measured nothing (or sent nothing, for a rate), never 0 standing for "not measured"."""

    def known(value: Any) -> bool:
        return value is not None and not pd.isna(value)

    return {
        "opened": int(row["opened"]) if known(row["opened"]) else None,
        "open_rate": float(row["open_rate"]) if known(row["open_rate"]) else None,
        "clicked": int(row["clicked"]) if known(row["clicked"]) else None,
        "click_rate": float(row["click_rate"]) if known(row["click_rate"]) else None,
    }


@dataclass(frozen=True)
class CampaignResults:
    """A campaign's totals (:class:`~bcartnb.ledger.TrackResults`), its members' responses
    (one row each, joined with 会社名・都道府県・価格グループ when the member file can still
    be read) and what was measured at all."""

    totals: TrackResults
    members: pd.DataFrame
    opens_measured: bool
    clicks_measured: bool
    started: datetime | None
    price_groups: Mapping[int, str] = field(default_factory=dict)
    notes: tuple[str, ...] = ()

    @property
    def delivered(self) -> pd.DataFrame:
        return self.members[self.members["delivered"]]

    def by(self, column: str) -> pd.DataFrame:
        """配信数, 開封数・開封率, クリック数・クリック率 per value of ``column`` (``pref``,
        ``price_group_id``) among the delivered members, most delivered first; a blank
        value is （空欄）. Empty when the member file could not be read."""
        got = self.delivered
        if column not in got.columns:
            return _rates(pd.DataFrame({"group": [], "opened": [], "clicked": []}))
        values = got[column]
        if column == "price_group_id":
            labels = [_group_label(v, self.price_groups) for v in values.tolist()]
        else:
            labels = values.astype("string").fillna("（空欄）").tolist()
        frame = pd.DataFrame(
            {"group": labels, "opened": got["opened"].tolist(), "clicked": got["clicked"].tolist()}
        )
        return _rates(frame)

    def over_time(self) -> pd.DataFrame:
        """People who first opened and first clicked, per hour since sending for the first
        :data:`HOURLY` hours, then per day, up to the last response (``since`` and ``until``
        are hours; ``label`` is the marketer's words)."""
        if self.started is None:
            return pd.DataFrame(columns=["label", "since", "until", "opened", "clicked"])
        hours_open = _hours(self.delivered["first_open"], self.started)
        hours_click = _hours(self.delivered["first_click"], self.started)
        buckets = _buckets(float(max(hours_open.max(initial=-1.0), hours_click.max(initial=-1.0))))
        opened = _per_bucket(hours_open, len(buckets))
        clicked = _per_bucket(hours_click, len(buckets))
        rows = [
            {
                "label": _bucket_label(since, until),
                "since": since,
                "until": until,
                "opened": int(opened[i]),
                "clicked": int(clicked[i]),
            }
            for i, (since, until) in enumerate(buckets)
        ]
        return pd.DataFrame(rows, columns=["label", "since", "until", "opened", "clicked"])

    def links_frame(self) -> pd.DataFrame:
        """One row per tracked link: the CSV's ``--by link`` rows (machines apart)."""
        d = self.totals.delivered
        return pd.DataFrame(
            [
                {
                    "リンク番号": x.number,
                    "URL": x.url,
                    "クリック人数": x.people,
                    "クリック率": round(x.people / d, 4) if d else 0.0,
                    "のべクリック数": x.clicks,
                    "機械のクリック数": x.machine,
                }
                for x in self.totals.links
            ],
            columns=[
                "リンク番号",
                "URL",
                "クリック人数",
                "クリック率",
                "のべクリック数",
                "機械のクリック数",
            ],
        )

    def members_frame(self) -> pd.DataFrame:
        """One row per member the campaign mailed: the CSV's ``--by member`` rows."""
        m = self.members
        out = pd.DataFrame({"会員ID": m["member_id"]})
        for column, label in (("comp_name", "会社名"), ("pref", "都道府県")):
            if column in m.columns:
                out[label] = m[column]
        if "price_group_id" in m.columns:
            out["価格グループ"] = [_group_label(v, self.price_groups) for v in m["price_group_id"]]
        out["メールアドレス"] = m["address"]
        out["配信"] = m["delivered"].map(_yes)
        opened = m["opened"].map(_yes) if self.opens_measured else m["clicked"].map(_clicked_open)
        out["開封"] = opened.where(m["delivered"], "")
        clicked = m["clicked"].map(_yes) if self.clicks_measured else m["clicked"].map(_unknown)
        out["クリック"] = clicked.where(m["delivered"], "")
        out["開封回数"] = m["opens"]
        out["クリック回数"] = m["clicks"]
        out["機械の開封回数"] = m["machine_opens"]
        out["機械のクリック回数"] = m["machine_clicks"]
        out["最初の開封"] = m["first_open"].map(_when)
        out["最初のクリック"] = m["first_click"].map(_when)
        return out

    def to_dict(self) -> dict[str, Any]:
        """The JSON: the totals (``bcartnb results --json``'s first keys) and the breakdowns."""
        return {
            **self.totals.to_dict(),
            "measured": {"opens": self.opens_measured, "clicks": self.clicks_measured},
            "sending_started": self.started.isoformat() if self.started else None,
            "by_pref": _records(self.by("pref")),
            "by_price_group": _records(self.by("price_group_id")),
            "over_time": _records(self.over_time()),
            "notes": list(self.notes),
        }


def _yes(flag: Any) -> str:
    return "はい" if bool(flag) else "いいえ"


def _unknown(_flag: Any) -> str:
    return "不明"


def _clicked_open(clicked: Any) -> str:
    """A text mail's 開封: known only for those who clicked."""
    return "はい" if bool(clicked) else "不明"


def _when(value: Any) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)) or pd.isna(value):
        return ""
    return str(pd.Timestamp(value).isoformat())


def _group_label(value: Any, names: Mapping[int, str]) -> str:
    if value is None or pd.isna(value):
        return "（空欄）"
    try:
        key = int(value)
    except (TypeError, ValueError):
        return str(value)
    return f"{key}: {names[key]}" if key in names else str(key)


def _rates(frame: pd.DataFrame) -> pd.DataFrame:
    grouped = frame.groupby("group", sort=False).agg(
        delivered=("opened", "size"), opened=("opened", "sum"), clicked=("clicked", "sum")
    )
    grouped = grouped.astype("int64")
    grouped["open_rate"] = (grouped["opened"] / grouped["delivered"]).round(4)
    grouped["click_rate"] = (grouped["clicked"] / grouped["delivered"]).round(4)
    grouped = grouped.sort_values(["delivered", "clicked"], ascending=False, kind="stable")
    return grouped.reset_index()


def _records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    return [{str(k): _plain(v) for k, v in row.items()} for row in frame.to_dict("records")]


def _plain(value: Any) -> Any:
    return value.item() if hasattr(value, "item") else value


def _hours(times: pd.Series, start: datetime) -> np.ndarray[Any, np.dtype[np.float64]]:
    """Hours from ``start`` to each time (NaT left out; a time before it counts as 0)."""
    when = pd.to_datetime(times, utc=True).dropna()
    since = (when - pd.Timestamp(start).tz_convert("UTC")).dt.total_seconds() / 3600
    return np.clip(since.to_numpy(dtype="float64"), 0.0, None)


def _per_bucket(hours: np.ndarray[Any, np.dtype[np.float64]], n: int) -> np.ndarray[Any, Any]:
    """How many of ``hours`` fall in each of :func:`_buckets`' ``n`` buckets."""
    whole = np.floor(hours).astype("int64")
    index = np.where(whole < HOURLY, whole, HOURLY + (whole - HOURLY) // 24)
    return np.bincount(index, minlength=n)[:n]


def _buckets(last: float) -> list[tuple[int, int]]:
    """Hour buckets [0, 1) … [47, 48), then days [48, 72) …, up to the one holding ``last``."""
    if last < 0:
        return []
    end = math.floor(last) + 1
    out = [(h, h + 1) for h in range(min(end, HOURLY))]
    day = HOURLY
    while day < end:
        out.append((day, day + 24))
        day += 24
    return out


def _bucket_label(since: int, until: int) -> str:
    if until - since == 1:
        return f"{since}〜{until}時間後"
    return f"{since // 24 + 1}日目"


# --- gathering ----------------------------------------------------------------------------


def campaign_breakdown(
    settings: Settings,
    campaign_id: str,
    *,
    ledger: Ledger | None = None,
    as_of: datetime | None = None,
    member_file: bool = True,
) -> CampaignResults:
    """The campaign's results with its members' responses, joined with the member file the
    campaign recorded (read now; a note says so when it cannot be read; not read at all
    without ``member_file``). ``as_of``: the members' responses as they stood then (the
    totals are always today's)."""
    with ledger_reading(settings, ledger) as led:
        totals = led.track_results(campaign_id)
        frame = led.member_responses(campaign_id, as_of=as_of)
        record = led.campaign(campaign_id)
        started = led.sending_started(campaign_id)
        seen = led.tracking_seen(campaign_id)
    opens, clicks = _measured(record.params, record.mail, seen, bool(totals.links), settings)
    notes: list[str] = []
    if member_file:
        frame = _with_member_columns(frame, record.params, notes)
    if not opens and clicks:
        notes.append(
            "テキストメールのため開封は計測できません（クリックした人だけを開封に数えています）。"
        )
    if not opens and not clicks:
        notes.append(
            "このキャンペーンは開封・クリックを計測していません"
            "（[tracking] url が未設定か、track = false）。"
        )
    return CampaignResults(
        totals=totals,
        members=frame,
        opens_measured=opens,
        clicks_measured=clicks,
        started=started,
        price_groups=dict(settings.names.price_groups),
        notes=tuple(notes),
    )


def tracking_measured(
    settings: Settings, campaign_id: str, *, ledger: Ledger | None = None
) -> tuple[bool, bool]:
    """(opens measured, clicks measured) for a campaign, by the rule its results use: what
    the wizard's done screen says of where the results will be."""
    with ledger_reading(settings, ledger) as led:
        record = led.campaign(campaign_id)
        links = bool(led.tracked_links(campaign_id))
        seen = led.tracking_seen(campaign_id)
    return _measured(record.params, record.mail, seen, links, settings)


def _measured(
    params: Mapping[str, Any],
    mail: Mapping[str, Any] | None,
    seen: bool,
    has_links: bool,
    settings: Settings,
) -> tuple[bool, bool]:
    """(opens measured, clicks measured). The ledger keeps no "measured" flag: a campaign was
    measured when it has a link table or any event, or (neither: an HTML mail without links
    nobody opened yet) when the shop measures now and the campaign did not say ``track =
    false``. Opens need an HTML mail (the image); clicks need a tracked link."""
    if params.get("track") is False:
        return False, False
    on = seen or settings.tracking.base is not None
    html = bool((mail or {}).get("html", params.get("html")))
    return on and html, on and has_links


def _with_member_columns(
    frame: pd.DataFrame, params: Mapping[str, Any], notes: list[str]
) -> pd.DataFrame:
    """会社名・都道府県・価格グループ from the campaign's member file, when it can be read."""
    path = params.get("members")
    try:
        members = read_members(str(path))
    except (BcartnbError, OSError, TypeError) as err:
        why = err.ja if isinstance(err, BcartnbError) and err.ja else str(err)
        notes.append(
            f"会員ファイル {path} を読めないため、都道府県別・価格グループ別の内訳は"
            f"表示できません（{why}）。"
        )
        return frame
    keep = [c for c in ("id", "comp_name", "pref", "price_group_id") if c in members.columns]
    table = members[keep].drop_duplicates("id").set_index("id")
    joined = table.reindex(frame["member_id"].to_numpy())
    out = frame.copy()
    for column in keep[1:]:
        out[column] = joined[column].to_numpy()
    return out


# --- the history's rates ------------------------------------------------------------------


def with_rates(history: pd.DataFrame, counts: Mapping[str, tuple[int, int]]) -> pd.DataFrame:
    """The send history (:meth:`~bcartnb.ledger.Ledger.campaigns`) with ``opened``,
    ``clicked``, ``open_rate`` and ``click_rate`` (over the mails sent; NaN where the
    campaign measured nothing, as :meth:`~bcartnb.ledger.Ledger.response_counts` says)."""
    got = [counts.get(str(cid)) for cid in history["campaign_id"]]
    sent = history["sent"].astype("float64")
    out = history.copy()
    out["opened"] = pd.array([g[0] if g else pd.NA for g in got], dtype="Int64")
    out["clicked"] = pd.array([g[1] if g else pd.NA for g in got], dtype="Int64")
    out["open_rate"] = (out["opened"].astype("float64") / sent.where(sent > 0)).round(4)
    out["click_rate"] = (out["clicked"].astype("float64") / sent.where(sent > 0)).round(4)
    return out


def results_history(settings: Settings, *, ledger: Ledger | None = None) -> pd.DataFrame:
    """The send history with its rates, for a look (the wizard's 配信履歴と結果): a ledger file
    not made yet reads as empty and is not created."""
    with ledger_reading(settings, ledger) as led:
        return with_rates(led.campaigns(), led.response_counts())


# --- segments from results ----------------------------------------------------------------


def check_results_key(value: Any, where: str) -> str:
    """The ``results`` key: a campaign id as ``bcartnb campaigns`` prints it."""
    if not isinstance(value, str) or not _ID_RE.fullmatch(value.strip()):
        raise SettingsError(
            f"{where}: results must be a campaign id such as 20261206-101500-123456, not {value!r}",
            ja=f"{where} の results には、結果を使うキャンペーンのID（bcartnb campaigns で"
            f"表示される 20261206-101500-123456 の形）を書いてください（{value!r} ではなく）。",
        )
    return value.strip()


def members_with_results(
    members: pd.DataFrame,
    campaign_id: str,
    settings: Settings,
    *,
    ledger: Ledger | None = None,
    follow_up: str | None = None,
) -> pd.DataFrame:
    """The members with :data:`RESULT_COLUMNS` of campaign ``campaign_id`` (see the module);
    ``attrs["results_of"]`` names the campaign, and a frame that already has them is kept.

    ``follow_up``: the campaign being resumed (or continued) that uses these results. Its
    members are those its first run read: what people did after it was created is left out,
    so a non-opener who opens the first mail before the resume still gets the follow-up it
    was claimed for, rather than turning into a member missing from the file."""
    if members.attrs.get("results_of") == campaign_id:
        return members
    clash = [c for c in RESULT_COLUMNS if c in members.columns]
    if clash:
        raise InputError(
            f"the member file already has a column {clash[0]!r}, a results column's name",
            ja=f"会員ファイルに配信結果の列と同じ名前の列「{clash[0]}」があります。"
            "会員ファイルの見出しを変えてください。",
        )
    with ledger_reading(settings, ledger) as led:
        as_of = _created(led, follow_up)
        found = campaign_breakdown(
            settings, campaign_id, ledger=led, as_of=as_of, member_file=False
        )
    got = found.members.drop_duplicates("member_id").set_index("member_id")
    ids = pd.to_numeric(members["id"], errors="coerce")
    taken = got.reindex(ids.to_numpy())
    delivered = taken["delivered"].fillna(False).astype(bool).to_numpy()
    out = members.copy(deep=False)
    out["配信"] = pd.array(delivered, dtype="boolean")
    out["開封"] = _known(taken["opened"], delivered, found.opens_measured)
    out["クリック"] = _known(taken["clicked"], delivered, found.clicks_measured)
    out.attrs = {
        **members.attrs,
        "results_of": campaign_id,
        "results_measured": {"開封": found.opens_measured, "クリック": found.clicks_measured},
    }
    return out


def members_without_results(members: pd.DataFrame, *, keep: str | None = None) -> pd.DataFrame:
    """The members without an earlier :func:`members_with_results`'s columns (a face that
    lets the marketer choose another campaign, or none); those of ``keep`` stay."""
    had = members.attrs.get("results_of")
    if had is None or had == keep:
        return members
    out = members.drop(columns=list(RESULT_COLUMNS))
    out.attrs = {
        k: v for k, v in members.attrs.items() if k not in ("results_of", "results_measured")
    }
    return out


def _created(led: Ledger, campaign_id: str | None) -> datetime | None:
    """When ``campaign_id`` was created, None when it is not in the ledger (yet)."""
    if campaign_id is None:
        return None
    try:
        return led.campaign(campaign_id).created_at
    except CampaignStateError:
        return None


def _known(values: pd.Series, delivered: Any, measured: bool) -> Any:
    flags = pd.array(values.fillna(False).astype(bool).to_numpy(), dtype="boolean")
    if not measured:
        return pd.array([pd.NA] * len(flags), dtype="boolean")
    flags[~delivered] = pd.NA
    return flags


def check_results_filter(members: pd.DataFrame, flt: Mapping[str, Any] | None) -> None:
    """Refuse a filter on 開封 or クリック of a campaign that did not measure it (a text-only
    mail has no opens; a mail without tracked links no clicks): nobody would be found, and
    the marketer would read that as "everybody opened". A value that names the blank
    (``null``, or a list holding it) asks for the unknown knowingly and is taken."""
    measured = members.attrs.get("results_measured")
    if not flt or not measured:
        return
    cid = members.attrs.get("results_of")
    for key, value in flt.items():
        column = resolve_column(str(key), members.columns)
        asked = value is None or (isinstance(value, list | tuple) and None in value)
        if column in measured and not measured[column] and not asked:
            why = "テキストメールか、計測していない" if column == "開封" else "計測したリンクがない"
            raise FilterError(
                f"filter key {key!r}: campaign {cid} did not measure {column}",
                ja=f"絞込条件「{key}」: キャンペーン {cid} は{why}メールのため、"
                f"{column}は分かりません"
                "（配信 で絞り込むか、計測したキャンペーンを選んでください）。",
            )
