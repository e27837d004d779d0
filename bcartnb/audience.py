"""The audience: who is selected, who will get the mail (送信件数) and who cannot, and why.

Every selected member is either sendable or unsendable, never both and never neither, and
each unsendable member carries exactly one reason, decided in this order:

1. ``empty_address``      メールアドレスが空欄
2. ``invalid_address``    B-Cart が登録できない文字を含む、または形式が正しくないアドレス
3. ``not_opted_in``       メール案内が「受け取る」でない (only with ``opt_in_only``)
4. ``suppressed``         配信停止・不達: on the ledger's suppression list (an unsubscribe,
                          a complaint, a bounce or the shop's own entry)
5. ``already_sent``       既に同じメールを送信済み: another campaign mailed (or is mailing)
                          this very mail to the address (:mod:`bcartnb.ledger.claims`);
                          only when a mail is known, so never in ``bcartnb members``
6. ``duplicate_address``  同じアドレスの会員が先にいる (one mail per address)

The first member in file order keeps a shared address; addresses compare trimmed and
ignoring case. No member is left out for its 状態 (e.g. 停止): that is a filter's job
(``{"status": "有効"}``), so the count on screen never hides a rule nobody asked for.
"""

from __future__ import annotations

import functools
import unicodedata
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

import numpy as np
import pandas as pd
import pyarrow as pa  # type: ignore[import-untyped]
import pyarrow.compute as pc  # type: ignore[import-untyped]

from bcartnb.exceptions import FilterError
from bcartnb.filters import apply_filter, describe_filter, select
from bcartnb.members import address_codes, to_arrow_strings

__all__ = [
    "REASONS",
    "REASON_LABELS",
    "Audience",
    "build_audience",
    "format_summary",
    "hold_back",
]

#: Unsendable reason codes, in the order they are decided.
REASONS: Final[tuple[str, ...]] = (
    "empty_address",
    "invalid_address",
    "not_opted_in",
    "suppressed",
    "already_sent",
    "duplicate_address",
)
#: 送信できない理由, as the confirmation screen and the report say it.
REASON_LABELS: Final[Mapping[str, str]] = {
    "empty_address": "メールアドレスが空欄",
    "invalid_address": "登録できないメールアドレス",
    "not_opted_in": "メール案内を受け取らない",
    "suppressed": "配信停止・不達",
    "already_sent": "既に同じメールを送信済み",
    "duplicate_address": "メールアドレスの重複",
}
_ALREADY_SENT: Final = 1 + REASONS.index("already_sent")
_DUPLICATE: Final = 1 + REASONS.index("duplicate_address")


@dataclass(frozen=True)
class Audience:
    """The outcome of filter + selection + address rules, ready for the confirmation screen.

    ``selected`` is ``sendable`` and ``unsendable`` together; all three keep file order, the
    file's row numbers as index and every member column (later stages merge member fields
    into the mail). ``unsendable`` has one more column, ``reason``. ``already_sent_in``:
    for each address held back as ``already_sent`` (lower-cased), the campaign that has it.
    ``codes``: each selected row's verdict (0 sendable, else 1 + its reason's place in
    :data:`REASONS`), kept so :func:`hold_back` decides again without the lists it came from.
    """

    selected: pd.DataFrame
    sendable: pd.DataFrame
    unsendable: pd.DataFrame
    reasons: dict[str, int]
    codes: np.ndarray[Any, np.dtype[np.int8]] = field(repr=False, compare=False)
    filter: Mapping[str, Any] | None = None
    checked: tuple[int, ...] = ()
    opt_in_only: bool = False
    source: str | None = field(default=None)
    already_sent_in: Mapping[str, str] = field(default_factory=dict)

    def already_sent_by_campaign(self) -> dict[str, int]:
        """Members held back as ``already_sent``, counted by the campaign that has them."""
        held = self.unsendable[self.unsendable["reason"] == "already_sent"]
        counts: dict[str, int] = {}
        for address in held["email"].tolist():
            cid = self.already_sent_in.get(str(address).strip().lower())
            if cid is not None:
                counts[cid] = counts.get(cid, 0) + 1
        return dict(sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))

    def summary(self) -> dict[str, Any]:
        """The contract's JSON: ``selected``, ``sendable``, ``unsendable``, ``reasons``."""
        return {
            "selected": len(self.selected),
            "sendable": len(self.sendable),
            "unsendable": len(self.unsendable),
            "reasons": dict(self.reasons),
        }

    def reason_table(self) -> pd.DataFrame:
        """送信できない理由 and 件数 per reason code, in decision order, zeros included."""
        return pd.DataFrame(
            {
                "理由": [REASON_LABELS[r] for r in REASONS],
                "件数": [self.reasons[r] for r in REASONS],
            },
            index=pd.Index(list(REASONS), name="reason"),
        )


def build_audience(
    members: pd.DataFrame,
    filter: Mapping[str, Any] | None = None,
    checked: Sequence[int] | None = None,
    opt_in_only: bool = False,
    suppressed: Collection[str] = (),
    already_sent: Mapping[str, str] | None = None,
) -> Audience:
    """Filter, select (all results or the checked ids) and sort members into sendable or not.

    ``suppressed`` is the ledger's suppression list (lower-cased addresses, as
    :meth:`~bcartnb.ledger.Ledger.suppressed_addresses` gives it); ``already_sent`` maps
    each lower-cased address that already has this mail to the campaign holding it
    (:meth:`~bcartnb.ledger.Ledger.already_sent`).

    Raises :class:`~bcartnb.exceptions.FilterError` for a bad filter and
    :class:`~bcartnb.exceptions.SelectionError` for a checked id outside the result.
    """
    selected = select(apply_filter(members, filter), checked)
    if "email" in selected.columns:
        raw = selected["email"]
    else:
        raw = pd.Series(pd.NA, index=selected.index, dtype="str")
    # codes: 0 sendable, then 1 + position in REASONS
    codes, trimmed = address_codes(raw)
    if opt_in_only:
        if "mm_flag" not in selected.columns:
            raise FilterError(
                "opt-in only (メール案内) needs the mm_flag column in the members",
                ja="メール案内「受け取る」のみで送るには、会員ファイルに「メール案内」の列が必要です。",
            )
        opted = selected["mm_flag"].to_numpy(dtype=bool, na_value=False)
        codes[(codes == 0) & ~opted] = 1 + REASONS.index("not_opted_in")
    # sendable so far means valid, and valid means ASCII: ascii_lower matches the lists' keys
    # and tells duplicates apart
    lowered = pc.ascii_lower(trimmed)
    if suppressed:
        codes[(codes == 0) & _listed(lowered, suppressed)] = 1 + REASONS.index("suppressed")
    if already_sent:
        codes[(codes == 0) & _listed(lowered, already_sent)] = _ALREADY_SENT
    held_in = _held_in(lowered, codes, already_sent) if already_sent else {}
    open_ = np.flatnonzero(codes == 0)
    if len(open_):
        keys = pc.dictionary_encode(pc.take(lowered, pa.array(open_)))
        ids = keys.indices.to_numpy(zero_copy_only=False)
        first = np.empty(len(keys.dictionary), dtype=np.int64)
        order = np.arange(len(ids))
        first[ids[::-1]] = order[::-1]  # the last write wins: the first occurrence
        codes[open_[first[ids] != order]] = _DUPLICATE
    if "email" in selected.columns:
        selected = _with_trimmed_email(selected, raw, trimmed)
    return _sorted(
        selected,
        codes,
        held_in,
        filter=filter,
        checked=tuple(int(i) for i in checked) if checked else (),
        opt_in_only=opt_in_only,
        source=members.attrs.get("source"),
    )


def hold_back(audience: Audience, already_sent: Mapping[str, str]) -> Audience:
    """``audience`` with the members whose address already has this mail held back as
    ``already_sent`` (lower-cased address → the campaign holding it).

    The very audience :func:`build_audience` gives with the two maps merged from the start
    (the later one winning), without filtering or checking an address again: what a plan
    learns from the ledger once its members are sorted, and a claim about the addresses
    another campaign took since. Only sendable members and duplicates can move (every
    earlier reason is decided first), and a duplicate moves with the address it shares, so
    no member becomes sendable.
    """
    rows = np.flatnonzero(np.isin(audience.codes, (0, _ALREADY_SENT, _DUPLICATE)))
    if not already_sent or not len(rows):
        return audience
    codes = audience.codes.copy()
    # sendable, held or a duplicate means valid, and valid means ASCII: ascii_lower is enough
    keys = pc.ascii_lower(to_arrow_strings(audience.selected["email"].iloc[rows]))
    codes[rows[_listed(keys, already_sent)]] = _ALREADY_SENT
    return _sorted(
        audience.selected,
        codes,
        _held_in(keys, codes[rows], {**audience.already_sent_in, **already_sent}),
        filter=audience.filter,
        checked=audience.checked,
        opt_in_only=audience.opt_in_only,
        source=audience.source,
    )


def _listed(keys: pa.Array, listed: Collection[str]) -> np.ndarray[Any, np.dtype[np.bool_]]:
    """Which keys are on the list (a missing key is not)."""
    found = pc.is_in(keys, value_set=_value_set(listed))
    return np.asarray(found.fill_null(False).to_numpy(zero_copy_only=False), dtype=bool)


def _held_in(
    keys: pa.Array, codes: np.ndarray[Any, Any], held: Mapping[str, str]
) -> dict[str, str]:
    """For each address held back as ``already_sent``, the campaign that has it."""
    hit = pc.filter(keys, pa.array(codes == _ALREADY_SENT)).to_pylist()
    return {a: held[a] for a in set(hit)}


def _sorted(
    selected: pd.DataFrame,
    codes: np.ndarray[Any, np.dtype[np.int8]],
    held_in: dict[str, str],
    **chosen: Any,
) -> Audience:
    """The audience the codes decide: sendable and unsendable in file order, counted."""
    ok = codes == 0
    labels = np.array([None, *REASONS], dtype=object)
    counts = np.bincount(codes, minlength=len(REASONS) + 1)
    return Audience(
        selected=selected,
        sendable=selected[ok],
        unsendable=selected[~ok].assign(reason=pd.array(labels[codes[~ok]], dtype="string")),
        reasons={r: int(counts[1 + i]) for i, r in enumerate(REASONS)},
        codes=codes,
        already_sent_in=held_in,
        **chosen,
    )


def _value_set(addresses: Collection[str]) -> pa.Array:
    """The addresses as Arrow strings, for ``is_in``; kept per frozenset (the wizard asks
    with the same suppression list on every tick, and building it cost more than the tick)."""
    if isinstance(addresses, frozenset):
        return _frozen_value_set(addresses)
    return pa.array(list(addresses), type=pa.string())  # is_in needs no order


@functools.lru_cache(maxsize=4)
def _frozen_value_set(addresses: frozenset[str]) -> pa.Array:
    return pa.array(list(addresses), type=pa.string())


def _with_trimmed_email(selected: pd.DataFrame, raw: pd.Series, trimmed: pa.Array) -> pd.DataFrame:
    """Mail goes to the trimmed address; copy the frame only when trimming changed a cell
    (read_members trims already, so a million-row frame is not copied for nothing)."""
    before = pc.utf8_length(to_arrow_strings(raw))
    after = pc.utf8_length(trimmed)
    changed = pc.or_(pc.not_equal(before, after), pc.equal(after, 0))
    if not pc.any(changed).as_py():
        return selected
    cleaned = pc.if_else(pc.equal(trimmed, ""), pa.scalar(None, trimmed.type), trimmed)
    emails = pd.Series(pd.array(cleaned, dtype="str"), index=selected.index)
    return selected.assign(email=emails)


def _width(text: str) -> int:
    return sum(2 if unicodedata.east_asian_width(c) in "WF" else 1 for c in text)


def _pad(text: str, width: int) -> str:
    return text + " " * max(0, width - _width(text))


def format_summary(audience: Audience) -> str:
    """A plain-text table in Japanese for a terminal or a notebook cell: 送信件数 and
    送信できない件数 with each reason, the filter in words and how members were chosen."""
    how = (
        f"チェックした会員に送信（{len(audience.checked)} 件をチェック）"
        if audience.checked
        else "検索結果すべてに送信"
    )
    lines = []
    if audience.source:
        lines.append(f"会員ファイル: {audience.source}")
    lines += [
        f"絞込条件: {describe_filter(audience.filter)}",
        f"送信方法: {how}",
        f"メール案内: {'「受け取る」の会員のみ' if audience.opt_in_only else '指定なし'}",
        "",
    ]
    rows = [
        ("対象会員数", len(audience.selected)),
        ("送信件数", len(audience.sendable)),
        ("送信できない件数", len(audience.unsendable)),
    ]
    # already_sent needs a mail: members alone (``bcartnb members``) never have it
    shown = [r for r in REASONS if r != "already_sent" or audience.reasons[r]]
    rows += [(f"  {REASON_LABELS[r]}", audience.reasons[r]) for r in shown]
    label_w = max(_width(label) for label, _ in rows) + 2
    num_w = max(len(f"{n:,}") for _, n in rows)
    lines += [f"{_pad(label, label_w)}{n:>{num_w},} 件" for label, n in rows]
    return "\n".join(lines)
