"""会員ファイル: choose the member list in the wizard instead of editing a path in code.

Two ways, side by side: a picker listing the member files found in the given folders (the
project's ``data/`` and the notebook's folder), and an upload (「CSVをアップロード」) of B-Cart's
export. An upload is stored as a new file under the upload folder with a name made here, never
from the uploaded file's name (which could hold ``../`` or a device name), so a campaign
started from it can be resumed from its recorded path later. The bytes are kept as they came:
:func:`bcartnb.members.read_members` decides CP932, UTF-8 or UTF-8 with BOM, as for any file.

:data:`MEMBER_SUFFIXES` lists what the picker offers: the CSV export and the B-Cart API snapshot
(``bcartnb bcart pull``), which :func:`~bcartnb.members.read_members` tells apart by suffix.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import html
import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, Final

import ipywidgets as widgets

from bcartnb.exceptions import MembersFileError
from bcartnb.files import write_atomically
from bcartnb.members import SNAPSHOT_SUFFIXES

from ._common import fit, row

__all__ = [
    "MAX_UPLOAD_BYTES",
    "MEMBER_SUFFIXES",
    "NO_FILE",
    "MemberSource",
    "find_member_files",
    "store_upload",
]

#: The member files the picker offers: B-Cart's CSV export and the API snapshot.
MEMBER_SUFFIXES: Final[tuple[str, ...]] = (".csv", *SNAPSHOT_SUFFIXES)
#: An upload larger than this is refused (a B-Cart export of 100,000 members is ~30 MB).
MAX_UPLOAD_BYTES: Final = 200_000_000
#: The picker's first entry.
NO_FILE: Final = "（会員ファイルを選んでください）"
_MAX_LISTED: Final = 500


def find_member_files(folders: Iterable[str | os.PathLike[str]]) -> list[Path]:
    """Member files directly in each folder and one level below, newest first, no duplicates.

    Shallow on purpose: a notebook folder may sit above a big tree (a home directory).
    """
    found: dict[Path, float] = {}
    for folder in folders:
        base = Path(folder)
        if not base.is_dir():
            continue
        for pattern in ("*", "*/*"):
            for path in base.glob(pattern):
                if len(found) >= _MAX_LISTED:
                    return sorted(found, key=lambda p: (-found[p], str(p)))
                if path.suffix.lower() in MEMBER_SUFFIXES and not path.name.startswith("."):
                    try:
                        if path.is_file():
                            found[path.resolve()] = path.stat().st_mtime
                    except OSError:
                        continue
    return sorted(found, key=lambda p: (-found[p], str(p)))


def store_upload(
    content: bytes,
    original_name: str,
    folder: str | os.PathLike[str],
    now: dt.datetime | None = None,
) -> Path:
    """Write an uploaded member file under ``folder`` with a name made here; return its path.

    The name is the upload time and a hash of the content
    (``members-20261129-213000-1a2b3c4d5e6f.csv``), so the same file uploaded twice is one
    file and nothing the uploader chose reaches the path.
    """
    suffix = Path(str(original_name)).suffix.lower()
    if suffix not in MEMBER_SUFFIXES:
        raise MembersFileError(
            f"{original_name!r}: not a member file ({', '.join(MEMBER_SUFFIXES)})",
            ja=f"{original_name!r}: アップロードできるのは会員CSV（.csv）か"
            " bcart pull のスナップショット（.parquet）だけです。",
        )
    if not content:
        raise MembersFileError(
            f"{original_name!r}: the uploaded file is empty",
            ja=f"アップロードしたファイル {original_name!r} が空です。",
        )
    if len(content) > MAX_UPLOAD_BYTES:
        raise MembersFileError(
            f"{original_name!r}: larger than {MAX_UPLOAD_BYTES:,} bytes",
            ja=f"アップロードしたファイル {original_name!r} が大きすぎます"
            f"（{MAX_UPLOAD_BYTES // 1_000_000}MBまで）。",
        )
    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    stamp = (now or dt.datetime.now()).strftime("%Y%m%d-%H%M%S")
    digest = hashlib.sha256(content).hexdigest()[:12]
    same = sorted(out.glob(f"members-*-{digest}{suffix}"))
    if same:
        return same[0].resolve()
    path = out / f"members-{stamp}-{digest}{suffix}"
    return write_atomically(path, content).resolve()


def _shown(folders: Sequence[Path]) -> list[str]:
    """The folders as the marketer knows them: relative to the notebook's, each once."""
    out: dict[Path, str] = {}
    for f in folders:
        full = f.resolve()
        if full in out or not (full.is_dir() or full.name == "uploads"):
            continue
        try:
            shown = os.path.relpath(full)
        except ValueError:  # another drive on Windows
            shown = str(full)
        out[full] = "このノートブックのフォルダー" if shown == "." else shown
    return list(out.values())


class MemberSource(widgets.VBox):  # type: ignore[misc]
    """The 会員ファイル box; ``load`` (読み込む) and ``upload`` are wired by the wizard."""

    def __init__(self, folders: Sequence[str | os.PathLike[str]]) -> None:
        self.folders = [Path(f) for f in folders]
        self.current = widgets.HTML("")
        self.current.add_class("bcartnb-members-current")
        self.picker = widgets.Dropdown(
            options=[NO_FILE], value=NO_FILE, description="会員ファイル",
            style={"description_width": "7em"}, layout=widgets.Layout(width="40em"),
        )  # fmt: skip
        self.picker.add_class("bcartnb-members-picker")
        self.load = widgets.Button(description="読み込む", icon="folder-open")
        self.load.add_class("bcartnb-members-load")
        self.refresh_button = widgets.Button(description="一覧を更新", icon="refresh")
        self.refresh_button.add_class("bcartnb-members-refresh")
        self.refresh_button.on_click(lambda _b: self.refresh())
        self.upload = widgets.FileUpload(
            accept=",".join(MEMBER_SUFFIXES), multiple=False, description="CSVをアップロード"
        )
        self.upload.add_class("bcartnb-members-upload")
        fit(self.load, self.refresh_button, self.upload)
        where = "、".join(_shown(self.folders))
        super().__init__(
            [
                self.current,
                row(self.picker, self.load, self.refresh_button),
                row(
                    self.upload,
                    widgets.HTML(
                        '<span style="color:#555;font-size:90%">B-Cart の会員一覧から'
                        "ダウンロードしたCSV（Shift_JIS／UTF-8）をそのまま選べます。"
                        f"一覧に出るのは次のフォルダーのCSVです: {html.escape(where)}</span>"
                    ),
                ),
            ]
        )
        self.add_class("bcartnb-member-source")
        self.refresh()

    @property
    def controls(self) -> list[widgets.Widget]:
        return [self.picker, self.load, self.refresh_button, self.upload]

    def refresh(self) -> None:
        """Re-list the member files (a new export may have been saved meanwhile)."""
        keep = self.picker.value
        files = [str(p) for p in find_member_files(self.folders)]
        self.picker.options = [NO_FILE, *files]
        self.picker.value = keep if keep in files else NO_FILE

    @property
    def chosen(self) -> Path | None:
        value = self.picker.value
        return None if not value or value == NO_FILE else Path(value)

    def uploaded(self) -> tuple[str, bytes] | None:
        """(name, bytes) of the file just uploaded, or None."""
        value: Any = self.upload.value
        if not value:
            return None
        item = value[0]
        return str(item["name"]), bytes(item["content"])

    def show_current(self, source: str, count: int) -> None:
        self.current.value = f"<b>会員ファイル</b>: {html.escape(source)}（{count:,}件）"
