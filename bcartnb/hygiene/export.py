"""The suppression list as a B-Cart member CSV, so B-Cart's own screens stop mailing them too.

B-Cart's 会員インポート updates members by their id; the file carries only 会員ID and
メール案内 = 受け取らない, nothing else, so importing it can never overwrite an address or
a name the shop changed in B-Cart since. It is written in CP932 with CRLF line ends, as
B-Cart's own exports are (and as Excel opens a Japanese CSV), atomically: a half-written
file is never left where the shop would import it.
"""

from __future__ import annotations

import csv
import io
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from bcartnb.exceptions import HygieneError
from bcartnb.files import write_atomically
from bcartnb.ledger import Suppression

__all__ = ["BcartExport", "export_bcart_csv"]

#: The header B-Cart's import matches (see DESIGN's member CSV table).
HEADER = ("会員ID", "メール案内")
OPTED_OUT = "受け取らない"


@dataclass(frozen=True)
class BcartExport:
    """What was written: the member ids, and the listed addresses no member id was found for."""

    path: Path
    member_ids: tuple[int, ...]
    without_id: tuple[str, ...]


def export_bcart_csv(
    suppressions: Iterable[Suppression],
    path: str | os.PathLike[str],
    *,
    members: pd.DataFrame | None = None,
) -> BcartExport:
    """Write every suppressed member's 会員ID with メール案内 = 受け取らない.

    Every member of ``members`` (the member file, when given) whose address is listed gets
    the row too: B-Cart may hold one address on several members, and a manual entry names
    an address, not a member. A listed address no member id was found for is reported back
    in ``without_id``, never silently dropped.
    """
    lookup: dict[str, list[int]] = {}
    if members is not None and len(members):
        for member_id, address in zip(members["id"], members["email"], strict=True):
            if isinstance(address, str) and address.strip():
                lookup.setdefault(address.strip(" \t\u3000").lower(), []).append(int(member_id))
    ids: set[int] = set()
    missing: list[str] = []
    for s in suppressions:
        found = [s.member_id] if s.member_id is not None else []
        found += lookup.get(s.address, [])
        if not found:
            missing.append(s.address)
        ids.update(found)
    out = io.StringIO(newline="")
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(HEADER)
    for member_id in sorted(ids):
        writer.writerow((member_id, OPTED_OUT))
    target = Path(path).expanduser()
    if target.is_dir():
        raise HygieneError(
            f"{target}: is a folder", ja="書き出し先がフォルダです。ファイル名を指定してください"
        )
    try:
        write_atomically(target, out.getvalue().encode("cp932"), mode=0o600)
    except OSError as err:
        raise HygieneError(
            f"{target}: cannot write: {err}", ja="書き出し先のフォルダに書き込めません"
        ) from err
    return BcartExport(target, tuple(sorted(ids)), tuple(missing))
