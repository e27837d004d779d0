"""The suppression list as CSV for B-Cart: opt-outs to import, bounces to review, never mixed.

An opt-out (unsubscribed, complaint, manual) is the member's own wish, or the shop's, not to be
mailed: B-Cart's own word for it is メール案内 = 受け取らない, so those go in the import file,
which carries only 会員ID and メール案内. B-Cart's 会員インポート updates members by their id, so
importing it can never overwrite an address or a name the shop changed in B-Cart since.

A bounce is not a wish: the member never changed the preference, the address failed. Writing
it as 受け取らない would turn the member's メール案内 off for good, even after the address is
fixed. So bounces go to a second file, ``NAME-bounces.csv``, for the shop's own review: each
row labelled 不達 with its reason, under headers B-Cart's import does not know (the API push
sets メールアドレス無効 for them instead). Which member an address is follows
:mod:`bcartnb.hygiene.writeback`, the API push's rule: an address with no member or several is
not written to the import file and is reported back with the reason.

Both files are CP932 with CRLF line ends, as B-Cart's own exports are (and as Excel opens a
Japanese CSV), written atomically: a half-written file is never left where the shop would
import it.
"""

from __future__ import annotations

import csv
import io
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import pandas as pd

from bcartnb.exceptions import HygieneError
from bcartnb.files import write_atomically
from bcartnb.hygiene.writeback import Resolution, Unresolved, resolve_members
from bcartnb.ledger import BCART_FIELDS, Suppression
from bcartnb.ledger.suppressions import REASON_LABELS
from bcartnb.spreadsheet import text_cell

__all__ = ["BOUNCE_HEADER", "HEADER", "BcartExport", "bounces_path", "export_bcart_csv"]

#: The header B-Cart's import matches (see DESIGN's member CSV table).
HEADER: Final = ("会員ID", "メール案内")
OPTED_OUT: Final = "受け取らない"
#: The bounce file's header: labelled for people, and named so that no column is one B-Cart's
#: import reads (no 会員ID, メールアドレス or メール案内): imported by mistake, it changes nobody.
BOUNCE_HEADER: Final = (
    "区分",
    "不達の理由",
    "会員ID（確認用）",
    "メールアドレス（確認用）",
    "回数",
    "初回",
    "最終",
    "詳細",
    "会員IDについて",
)
BOUNCED: Final = "不達"
_MAX_DETAIL: Final = 200


@dataclass(frozen=True)
class BcartExport:
    """What was written: the import file's member ids and the opt-outs left out of it (with
    why), the bounce file and its rows."""

    path: Path
    member_ids: tuple[int, ...]
    without_id: tuple[str, ...]
    bounces_path: Path | None = None
    bounces: int = 0
    unresolved: tuple[Unresolved, ...] = ()


def bounces_path(path: str | os.PathLike[str]) -> Path:
    """``suppressions.csv`` → ``suppressions-bounces.csv``, beside it."""
    target = Path(path).expanduser()
    return target.with_name(f"{target.stem}-bounces{target.suffix or '.csv'}")


def _is_opt_out(reason: str) -> bool:
    return BCART_FIELDS[reason][0] == "mm_flag"


def _cell(value: object) -> str:
    """Text for a review cell: one line, bounded, never a formula."""
    return text_cell(" ".join(str(value).split())[:_MAX_DETAIL])


def _csv(header: Sequence[str], rows: Iterable[Sequence[object]]) -> str:
    out = io.StringIO(newline="")
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(header)
    writer.writerows(rows)
    return out.getvalue()


def _bounce_rows(bounces: Sequence[Suppression], found: Resolution) -> list[list[object]]:
    why = {u.address: u for u in found.unresolved}
    rows: list[list[object]] = []
    for s in bounces:
        miss = why.get(s.address)
        member: object = found.member_ids.get(s.address, "")
        if miss is not None:
            member = " / ".join(map(str, miss.member_ids))
        rows.append(
            [
                BOUNCED,
                REASON_LABELS[s.reason],
                member,
                _cell(s.address),
                s.count,
                f"{s.since:%Y-%m-%d}",
                f"{s.last_seen:%Y-%m-%d}",
                _cell(s.detail or ""),
                "" if miss is None else _cell(f"{miss.label}。{miss.hint}"),
            ]
        )
    return rows


def _check(target: Path) -> None:
    if target.is_dir():
        raise HygieneError(
            f"{target}: is a folder", ja="書き出し先がフォルダです。ファイル名を指定してください"
        )


def _write(target: Path, data: bytes) -> None:
    try:
        write_atomically(target, data, mode=0o600)
    except OSError as err:
        raise HygieneError(
            f"{target}: cannot write: {err}", ja="書き出し先のフォルダに書き込めません"
        ) from err


def export_bcart_csv(
    suppressions: Iterable[Suppression],
    path: str | os.PathLike[str],
    *,
    members: pd.DataFrame | None = None,
    journal: Mapping[str, Iterable[int]] | None = None,
) -> BcartExport:
    """Write the opt-outs' 会員ID with メール案内 = 受け取らない to ``path``, and the bounces to
    :func:`bounces_path` for review (always written, header only when there are none, so an
    old one is never mistaken for today's).

    ``members`` (a member file, taken as B-Cart's whole list) and ``journal``
    (:meth:`~bcartnb.ledger.Ledger.journal_members`) resolve addresses listed without a
    member id, as the API push does.
    """
    listed = list(suppressions)
    target = Path(path).expanduser()
    review = bounces_path(target)
    opt_outs = [s for s in listed if _is_opt_out(s.reason)]
    bounces = [s for s in listed if not _is_opt_out(s.reason)]
    found = resolve_members(listed, journal=journal, members=members)
    ids = sorted({found.member_ids[s.address] for s in opt_outs if s.address in found.member_ids})
    left_out = tuple(u for u in found.unresolved if _is_opt_out(u.reason))
    for file in (target, review):  # both or neither
        _check(file)
    bounce_text = _csv(BOUNCE_HEADER, _bounce_rows(bounces, found))
    # the review file holds outside text (addresses, a server's words): one unencodable
    # character is shown as \uXXXX rather than losing the row
    _write(review, bounce_text.encode("cp932", errors="backslashreplace"))
    _write(target, _csv(HEADER, ((m, OPTED_OUT) for m in ids)).encode("cp932"))
    return BcartExport(
        target,
        tuple(ids),
        tuple(u.address for u in left_out),
        bounces_path=review,
        bounces=len(bounces),
        unresolved=left_out,
    )
