"""A B-Cart API snapshot file read as a member source: the same frame as the CSV export.

``bcartnb bcart pull`` (:mod:`bcartnb.bcart_api.snapshot`) writes the members' text, as the
CSV export would hold it, to a Parquet file with its metadata under :data:`METADATA_KEY`;
reading it back is one more source of members, so it lives here, beside the CSV, and types
the text by the same rules (:func:`~bcartnb.members.typed.typed_members`), straight from its
Arrow columns (:mod:`bcartnb.members.arrow_typed`: within 2x of pyarrow's own read). The stage that
writes snapshots imports this module (the format's name, version and frame attributes); no
member source imports the API client.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, BinaryIO, Final

import pandas as pd
import pyarrow as pa  # type: ignore[import-untyped]

from bcartnb.exceptions import MembersFileError
from bcartnb.files import open_regular
from bcartnb.members.arrow_typed import typed_table
from bcartnb.members.where import Where

__all__ = [
    "METADATA_KEY",
    "SNAPSHOT_FORMAT",
    "SNAPSHOT_SUFFIXES",
    "read_snapshot",
    "snapshot_attrs",
    "snapshot_info",
]

#: File suffixes read as a B-Cart API snapshot (:mod:`bcartnb.bcart_api`); anything else is a CSV.
SNAPSHOT_SUFFIXES: Final = (".parquet",)
#: The Parquet metadata key of a snapshot's own facts (``pulled_at``, ``api_url``, ...).
METADATA_KEY: Final = b"bcartnb.snapshot"
#: The snapshot format this version writes and reads.
SNAPSHOT_FORMAT: Final = 1


def _parquet() -> Any:
    """pyarrow.parquet, imported when a snapshot is read: reading a CSV never needs it."""
    import pyarrow.parquet as pq  # type: ignore[import-untyped]

    return pq


def snapshot_attrs(info: Mapping[str, Any], path: Path) -> dict[str, Any]:
    """The frame's ``attrs`` from a snapshot's metadata, the same whether written or read."""
    return {
        "source": str(path),
        "encoding": None,
        "pulled_at": info.get("pulled_at"),
        "api_url": info.get("api_url"),
    }


def snapshot_info(path: str | os.PathLike[str]) -> dict[str, Any]:
    """A snapshot's metadata (``pulled_at``, ``api_url``, ``members``) without its members."""
    file = Path(path)
    schema = _open(file, lambda f: _parquet().read_schema(f))
    return _info(schema, file)


def _open(file: Path, read: Callable[[BinaryIO], Any]) -> Any:
    where = Where(file)
    try:
        fh = open_regular(file, "会員ファイル", MembersFileError)  # a FIFO, /dev/zero: refused
    except OSError as err:
        raise where.unreadable(
            err,
            "is not a regular file but a directory",
            "は通常のファイルではありません（フォルダーです）。",
        ) from err
    try:
        with fh:
            return read(fh)
    except (pa.ArrowException, OSError) as err:
        raise where.error(
            f"is not a B-Cart snapshot (Parquet): {' '.join(str(err).split())[:200]}",
            ja=where.ja(
                "はBカートから取得したスナップショットとして読めません。"
                "bcartnb bcart pull で取得し直してください。"
            ),
        ) from err


def _info(schema: Any, file: Path) -> dict[str, Any]:
    raw = (schema.metadata or {}).get(METADATA_KEY)
    try:
        info = json.loads(raw) if raw else None
    except (ValueError, UnicodeDecodeError):
        info = None
    if not isinstance(info, dict) or info.get("format") != SNAPSHOT_FORMAT:
        raise MembersFileError(
            f"{file}: a Parquet file, but not a snapshot written by bcartnb bcart pull",
            ja=f"会員ファイル {file} は bcartnb bcart pull で取得した"
            "スナップショットではありません。",
        )
    return info


def read_snapshot(path: str | os.PathLike[str]) -> pd.DataFrame:
    """A snapshot as the member frame: the same frame as the CSV export of the same members.

    ``df.attrs`` has ``pulled_at`` and ``api_url`` besides the CSV's ``source`` and
    ``headers``. A file that is not a bcartnb snapshot is a :class:`MembersFileError`.
    """
    file = Path(path)
    table = _open(file, lambda f: _parquet().read_table(f))
    info = _info(table.schema, file)
    if not all(pa.types.is_string(t) or pa.types.is_large_string(t) for t in table.schema.types):
        raise MembersFileError(
            f"{file}: a snapshot column is not text",
            ja="bcart pull のスナップショットとして読めないファイルです"
            "（列が文字列ではありません）。",
        )
    frame = typed_table(table, file)  # the text's own Arrow columns, typed by the same rules
    frame.attrs.update(snapshot_attrs(info, file))
    return frame
