"""Members: a B-Cart member CSV or API snapshot read into one typed frame, and the address rules.

The frame is the same whatever the source (the CSV export, or a ``.parquet`` snapshot pulled
from the B-Cart API by :mod:`bcartnb.bcart_api`; both go through :func:`typed_members`): canonical
columns named after the API's customer keys, in :data:`CANONICAL_COLUMNS` order, then every
other column of the file (カスタム項目) under its own header, as text. A canonical column
missing from the file is still there, blank, so later stages never need to ask whether
``mm_flag`` exists; ``df.attrs["missing_columns"]`` says which ones the file lacked.

The index is the row number in the file as a spreadsheet shows it (the header is row 1, the
first member row 2), so an error found later (a bad address, an unencodable company name)
can still point at the row to fix. ``df.attrs`` holds ``source`` (the path), ``encoding``
and ``headers`` (column -> the header as written in the file).

One concern a module, each importing only the ones above it in this list:

    columns.py    the canonical columns, their kinds and Japanese headers; custom fields' names
    where.py      one-line errors naming the file, row and column
    addresses.py  trimming and validating addresses, vectorised
    hints.py      a standard column the file lacks, named with the header it probably is
    typed.py      a source's text cells → the typed frame (every source goes through it)
    decode.py     a CSV's bytes → text: UTF-8, UTF-8 with BOM or CP932, never a mix (whole,
                  or as UTF-8 a block at a time for the fast parse)
    arrowcsv.py   the fast parse: UTF-8 bytes to text cells by Arrow, or a refusal to guess
    arrow_typed.py  Arrow text (a snapshot's, the fast parse's) typed without Python strings,
                  by typed.py's rules
    snapshot.py   a B-Cart API snapshot (Parquet) read back as members
    reader.py     read_members: tells the sources apart, parses the CSV
"""

from __future__ import annotations

from bcartnb.members.addresses import (
    address_codes,
    check_addresses,
    is_valid_domain,
    normalize_address,
    normalize_addresses,
    to_arrow_strings,
)
from bcartnb.members.columns import (
    CANONICAL_COLUMNS,
    COLUMN_KINDS,
    COLUMN_LABELS,
    CUSTOM_PREFIX,
    HEADER_ALIASES,
    MM_FLAG_VALUES,
    TOKYO,
    custom_column,
    empty_members,
    renamed_note,
)
from bcartnb.members.reader import read_members
from bcartnb.members.snapshot import SNAPSHOT_SUFFIXES, read_snapshot, snapshot_info
from bcartnb.members.typed import typed_members

__all__ = [
    "CANONICAL_COLUMNS",
    "COLUMN_KINDS",
    "COLUMN_LABELS",
    "CUSTOM_PREFIX",
    "HEADER_ALIASES",
    "MM_FLAG_VALUES",
    "SNAPSHOT_SUFFIXES",
    "TOKYO",
    "address_codes",
    "check_addresses",
    "custom_column",
    "empty_members",
    "is_valid_domain",
    "normalize_address",
    "normalize_addresses",
    "read_members",
    "read_snapshot",
    "renamed_note",
    "snapshot_info",
    "to_arrow_strings",
    "typed_members",
]
