"""Members pulled from the B-Cart API into a snapshot file, the format the member list reads.

``GET /customers`` gives each member as JSON with the keys our canonical columns are named
after (paged by :mod:`bcartnb.bcart_api.pages`); :func:`customers_text` turns them into the
text a CSV export holds (``mm_flag`` 1/0, dates as B-Cart writes them, blanks as ""), with
each カスタム項目 under its name from ``GET /customer_customs`` (renamed ``カスタム:名前`` when
that name is a standard column's, by :func:`bcartnb.members.custom_column`, the CSV's rule),
and :func:`bcartnb.members.typed_members` types that text the way it types a CSV. So a
snapshot and the CSV export of the same members are the same frame, by one set of rules.

The snapshot is a Parquet file of that text (pyarrow), one string column a header, with
``pulled_at`` (Asia/Tokyo) and ``api_url`` in its metadata; never the token. It is written
to a temporary file and renamed into place only once every member was fetched and typed:
a failed pull leaves the previous snapshot as it was, never half a member list.
:func:`pull_snapshot` (what ``bcartnb bcart pull`` runs) keeps the pages of a pull that
stopped in ``FILE.parquet.partial`` and continues from there the next time.

Reading a snapshot is a member source, so it lives with the others in
:mod:`bcartnb.members.snapshot` (with the format's metadata key and version this module
writes); :func:`read_snapshot` and :func:`snapshot_info` are re-exported here for callers of
the API client.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Final
from zoneinfo import ZoneInfo

import pandas as pd
import pyarrow as pa  # type: ignore[import-untyped]
import pyarrow.parquet as pq  # type: ignore[import-untyped]

from bcartnb import __version__
from bcartnb.bcart_api.client import BcartClient
from bcartnb.bcart_api.pages import (
    MAX_MEMBERS,
    PAGE_SIZE,
    PartialPull,
    fetch_customers,
    showing_progress,
)
from bcartnb.exceptions import BcartApiError, InputError, MembersFileError
from bcartnb.files import write_atomically
from bcartnb.members.columns import custom_column, renamed_note
from bcartnb.members.snapshot import (
    METADATA_KEY,
    SNAPSHOT_FORMAT,
    SNAPSHOT_SUFFIXES,
    read_snapshot,
    snapshot_attrs,
    snapshot_info,
)
from bcartnb.members.typed import typed_members

__all__ = [
    "DEFAULT_SNAPSHOT",
    "METADATA_KEY",
    "PAGE_SIZE",
    "Pulled",
    "customers_text",
    "partial_path",
    "pull",
    "pull_snapshot",
    "read_snapshot",
    "snapshot_info",
    "write_snapshot",
]

#: Where ``bcartnb bcart pull`` writes without ``--out``: one name, so a campaign run again
#: on a fresh pull is recognised as the same campaign (its fingerprint holds the path).
DEFAULT_SNAPSHOT: Final = "bcart_members.parquet"
_TOKYO: Final = ZoneInfo("Asia/Tokyo")
# keys whose value is not one member field: customs is spread into columns
_NESTED: Final = frozenset({"customs"})


@dataclass
class Pulled:
    """What a pull brought: the members' text (header, rows) and what the run noticed."""

    header: list[str]
    rows: list[list[str]]
    pulled_at: datetime
    api_url: str
    requests: int = 0
    retries: int = 0
    warnings: list[str] = field(default_factory=list)

    @property
    def members(self) -> int:
        return len(self.rows)


def _text(value: Any, member: Any, key: str) -> str:
    """One JSON value as the CSV export would show it."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return str(int(value)) if value.is_integer() else repr(value)
    if isinstance(value, str):
        if "\0" in value:
            raise BcartApiError(
                f"member {member}: {key} holds a NUL character",
                ja=f"会員ID {member} の {key} に NUL 文字が含まれています。",
            )
        return value
    if isinstance(value, list):  # a check-box custom field with several values
        return ",".join(_text(v, member, key) for v in value)
    return json.dumps(value, ensure_ascii=False)


def customers_text(
    customers: Sequence[Mapping[str, Any]],
    custom_names: Mapping[int, str],
    warnings: list[str] | None = None,
) -> tuple[list[str], list[list[str]]]:
    """(header, rows) of text, as a CSV export of the same members would hold them.

    Columns are the members' keys in the order first seen, then each カスタム項目 by its
    name, in ``/customer_customs`` order; a field id the list does not know is named
    ``カスタム項目{id}``. A member's missing key is blank. A custom field named like a
    standard column or an API key is ``カスタム:名前`` (:func:`bcartnb.members.custom_column`),
    and a line saying so is added to ``warnings``.
    """
    # an empty shop still has the columns every member list needs
    keys: dict[str, None] = {} if customers else {"id": None, "email": None}
    fields: dict[int, None] = dict.fromkeys(custom_names)
    for member in customers:
        for key in member:
            if key not in _NESTED:
                keys.setdefault(key)
        for fid, _ in _custom_items(member):
            fields.setdefault(fid)
    taken: dict[str, None] = dict(keys)
    column: dict[int, str] = {}
    for fid in fields:
        own = custom_names.get(fid, f"カスタム項目{fid}")
        column[fid] = custom_column(own, taken)
        taken[column[fid]] = None
        if column[fid] != own and warnings is not None:
            warnings.append(renamed_note(own, column[fid]))
    header = list(taken)
    rows = []
    for member in customers:
        member_id = member.get("id")
        values = {k: _text(v, member_id, k) for k, v in member.items() if k not in _NESTED}
        for fid, value in _custom_items(member):
            values[column[fid]] = _text(value, member_id, column[fid])
        rows.append([values.get(h, "") for h in header])
    return header, rows


def _custom_items(member: Mapping[str, Any]) -> Iterable[tuple[int, Any]]:
    """``customs``: ``[{"field_id": 11, "value": "..."}]`` (see the package docstring)."""
    items = member.get("customs") or []
    if not isinstance(items, list):
        raise BcartApiError(
            f"member {member.get('id')}: customs is not a list: {items!r:.80}",
            ja=f"Bカートの会員 {member.get('id')} のカスタム項目（customs）が想定と違う形です:"
            f" {items!r:.80}",
        )
    for item in items:
        if not isinstance(item, Mapping) or not isinstance(item.get("field_id"), int):
            raise BcartApiError(
                f"member {member.get('id')}: a customs entry has no field_id: {item!r:.80}",
                ja=f"Bカートの会員 {member.get('id')} のカスタム項目（customs）に field_id"
                " がありません: "
                f"{item!r:.80}",
            )
        yield item["field_id"], item.get("value")


def _custom_names(client: BcartClient) -> dict[int, str]:
    """``GET /customer_customs``: field id → 項目名 (an API without it has no custom fields)."""
    reply = client.get("customer_customs")
    if reply is None:
        return {}
    items = reply.get("customer_customs") if isinstance(reply, dict) else None
    if not isinstance(items, list):
        raise BcartApiError(
            "GET customer_customs: the reply has no list of customer_customs",
            ja="BカートAPIの会員カスタム項目の応答の形が想定と違います。",
        )
    names: dict[int, str] = {}
    for item in items:
        if isinstance(item, dict) and isinstance(item.get("id"), int) and item.get("name"):
            names[item["id"]] = str(item["name"]).strip()
    return names


def pull(
    client: BcartClient,
    *,
    page_size: int = PAGE_SIZE,
    progress: bool | Callable[[int], None] = True,
    now: datetime | None = None,
    max_members: int = MAX_MEMBERS,
    partial: PartialPull | None = None,
) -> Pulled:
    """Every member and the custom fields' names, mapped to the CSV export's text.

    With ``partial`` (opened), pages kept by a stopped pull are not fetched again, and the
    members are dated from when that pull began.
    """
    pulled_at = (now or datetime.now(_TOKYO)).astimezone(_TOKYO)
    with showing_progress(client, progress) as bar:  # from the first request: it may wait
        names = _custom_names(client)
        customers, warnings = fetch_customers(
            client,
            page_size=page_size,
            progress=lambda n: bar(n) if n >= 0 else None,  # the end is said once, here
            max_members=max_members,
            partial=partial,
        )
    if partial is not None and partial.started_at is not None:
        pulled_at = min(pulled_at, partial.started_at.astimezone(_TOKYO))
    header, rows = customers_text(customers, names, warnings)
    return Pulled(
        header=header,
        rows=rows,
        pulled_at=pulled_at,
        api_url=client.api_url,
        requests=client.requests,
        retries=client.retries,
        warnings=warnings,
    )


def _body(header: Sequence[str], rows: Sequence[Sequence[str]]) -> pd.DataFrame:
    columns = list(zip(*rows, strict=True)) if rows else [()] * len(header)
    return pd.DataFrame(
        {i: pd.Series(list(col), dtype="str") for i, col in enumerate(columns)},
        index=pd.RangeIndex(len(rows)),
    )


def write_snapshot(pulled: Pulled, out: str | os.PathLike[str]) -> pd.DataFrame:
    """Type the members (refusing what a CSV would refuse), then write the snapshot whole.

    Returns the typed frame, as :func:`read_snapshot` will give it back.
    """
    path = Path(out)
    if path.suffix.lower() not in SNAPSHOT_SUFFIXES:
        raise _suffix_error(path)
    # until it is written, the members are the API's, not the file's: errors say so
    label = (
        f"members pulled from {pulled.api_url}",
        f"BカートAPI（{pulled.api_url}）から取得した会員",
    )
    body = _body(pulled.header, pulled.rows)
    frame = typed_members(pulled.header, body, path, described_as=label)
    info = {
        "format": SNAPSHOT_FORMAT,
        "pulled_at": pulled.pulled_at.isoformat(timespec="seconds"),
        "api_url": pulled.api_url,
        "members": pulled.members,
        "bcartnb": __version__,
    }
    arrays = [
        pa.array([row[i] or None for row in pulled.rows], type=pa.string())
        for i in range(len(pulled.header))
    ]
    table = pa.Table.from_arrays(arrays, names=list(pulled.header))
    table = table.replace_schema_metadata({METADATA_KEY: json.dumps(info).encode()})
    try:  # members' addresses: private to the user, like the ledger
        path.parent.mkdir(parents=True, exist_ok=True)
        write_atomically(path, lambda fh: pq.write_table(table, fh), mode=0o600)
    except OSError as err:
        raise _write_error(path, err) from err
    frame.attrs.update(snapshot_attrs(info, path))
    return frame


def partial_path(out: str | os.PathLike[str]) -> Path:
    """Where a pull into ``out`` keeps its pages until the snapshot is written."""
    path = Path(out)
    return path.with_name(path.name + ".partial")


def pull_snapshot(
    client: BcartClient,
    out: str | os.PathLike[str],
    *,
    progress: bool | Callable[[int], None] = True,
    now: datetime | None = None,
    max_members: int = MAX_MEMBERS,
) -> tuple[Pulled, pd.DataFrame]:
    """Pull every member into the snapshot ``out``, resuming a pull into it that stopped.

    The pages are kept in :func:`partial_path` as they come; it is removed once the
    snapshot is written, or when the members themselves are refused (a resumed pull would
    only bring the same refused values back). Anything else that stops the pull (the API's
    limits, the network, a wrong token, Ctrl-C) leaves it for the next pull to continue.
    """
    path = Path(out)
    if path.suffix.lower() not in SNAPSHOT_SUFFIXES:
        raise _suffix_error(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise _write_error(path, err) from err
    started = (now or datetime.now(_TOKYO)).astimezone(_TOKYO)
    partial = PartialPull(partial_path(path), client.api_url, PAGE_SIZE).open(started)
    try:
        pulled = pull(
            client, progress=progress, now=started, max_members=max_members, partial=partial
        )
        try:
            frame = write_snapshot(pulled, path)
        except MembersFileError:
            partial.discard()
            raise
        partial.discard()
        return pulled, frame
    except BaseException:
        if not partial.members:  # nothing fetched: nothing to resume, no file to leave
            partial.discard()
        raise
    finally:
        partial.close()


def _suffix_error(path: Path) -> InputError:
    # read_members tells a snapshot by its suffix: any other name would be read as a CSV
    return InputError(
        f"{path}: a snapshot file name must end in .parquet",
        ja=f"スナップショットのファイル名 {path} は .parquet で終わるようにしてください。",
    )


def _write_error(path: Path, err: OSError) -> InputError:
    return InputError(
        f"{path}: cannot write the snapshot: {err.strerror or err}",
        ja=f"スナップショット {path} を書き込めません"
        "（フォルダーと書き込み権限を確かめてください）。",
    )
