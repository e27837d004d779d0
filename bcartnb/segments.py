"""Saved filters (セグメント): a filter kept under a name, reused by every face.

A marketer who narrows the list to 「東京の卸売業」 every month saves that filter once (from the
wizard, or by editing the file) and names it afterwards: in the wizard's セグメント picker, in a
campaign file (``segment = "東京の卸売業"``), in papermill (``-p segment 東京の卸売業``), and
``bcartnb segments`` lists them.

The segments live in one human-readable TOML file beside the settings (``segments.toml`` in
the folder of ``bcartnb.toml``, or the ``segments`` setting), not in the ledger: a shop reads
and edits it in any text editor, and it travels with the settings::

    ["東京の卸売業"]
    saved_at = 2026-11-29T21:00:00+09:00

    ["東京の卸売業".filter]
    pref = "東京都"
    業種 = "卸売"

A segment combined with a campaign's own ``filter`` is the AND of both (a segment narrows,
the filter narrows further). A column named in both is an error rather than a silent
override: which of two conditions on 都道府県 was meant cannot be guessed.

Writes are atomic (a temporary file, then ``os.replace``) under an exclusive lock on a
``.lock`` file beside it (``fcntl.flock``), so two saves at once, from two notebooks or two
processes, both land: each re-reads the file inside the lock before it writes.
"""

from __future__ import annotations

import datetime as dt
import fcntl
import math
import os
import tomllib
import unicodedata
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Final

import tomli_w

from bcartnb.exceptions import SettingsError
from bcartnb.files import open_regular, write_atomically
from bcartnb.filters import OPERATORS, describe_filter, resolve_column
from bcartnb.quota import now_tokyo

__all__ = [
    "MAX_NAME",
    "SegmentStore",
    "check_segment_filter",
    "check_segment_name",
    "combine_filters",
]

#: The longest segment name; a name is a label in a picker, not a description.
MAX_NAME: Final = 60
_MAX_TEXT: Final = 1000  # one filter value (a company name, a date): never longer
_MAX_ITEMS: Final = 1000  # items in a "one of" list
_MAX_FILE: Final = 5_000_000  # the whole segments file
_BAD_CATEGORIES: Final = ("Cc", "Cf", "Zl", "Zp", "Co", "Cs", "Cn")


def _bad_char(text: str) -> str | None:
    """The first control, format, private-use or unassigned character, else None."""
    for ch in text:
        if unicodedata.category(ch) in _BAD_CATEGORIES:
            return ch
    return None


def check_segment_name(name: Any) -> str:
    """A segment name a person can read and type: NFC, no control character, not blank.

    Refused: non-text, blank, longer than :data:`MAX_NAME`, leading or trailing spaces
    (ASCII or 全角), and control or invisible characters (CR, LF, NUL, zero-width, bidi
    controls): a name is shown in pickers and messages, where those would hide or forge text.
    """
    if not isinstance(name, str):
        raise SettingsError(
            f"segment name must be text, not {name!r}",
            ja=f"セグメント名は文字列で指定してください（{name!r} ではなく）。",
        )
    norm = unicodedata.normalize("NFC", name)
    problem, ja = None, ""
    if not norm.strip(" \u3000\t"):
        problem, ja = "is empty", "セグメント名が空です。名前を入力してください。"
    elif len(norm) > MAX_NAME:
        problem = f"is longer than {MAX_NAME} characters"
        ja = f"セグメント名が長すぎます（{MAX_NAME}文字まで）。"
    elif (bad := _bad_char(norm)) is not None:
        problem = f"contains a control or invisible character (U+{ord(bad):04X})"
        ja = "セグメント名に改行・制御文字・見えない文字は使えません。"
    elif norm != norm.strip(" \u3000\t"):
        problem = "starts or ends with a space"
        ja = "セグメント名の先頭と末尾に空白は使えません。"
    if problem:
        raise SettingsError(
            f"segment name {name!r} {problem}", ja=f"{ja}（セグメント名: {name!r}）"
        )
    return norm


def _check_text(value: str, where: str) -> None:
    if len(value) > _MAX_TEXT:
        raise SettingsError(
            f"{where}: text longer than {_MAX_TEXT} characters",
            ja=f"セグメントの条件の値が長すぎます（{_MAX_TEXT}文字まで）。",
        )
    bad = _bad_char(value)
    if bad is not None:
        raise SettingsError(
            f"{where}: contains a control or invisible character (U+{ord(bad):04X})",
            ja="セグメントの条件に改行・制御文字・見えない文字は使えません。",
        )


def _check_scalar(value: Any, where: str) -> None:
    if isinstance(value, str):
        _check_text(value, where)
    elif isinstance(value, float) and not math.isfinite(value):
        raise SettingsError(
            f"{where}: {value!r} is not a finite number",
            ja=f"セグメントの条件に数値でない値（NaN・無限大: {value!r}）は使えません。",
        )
    elif not isinstance(value, bool | int | float):
        raise SettingsError(
            f"{where}: unsupported value {value!r} (text, a number, true/false, a list or "
            "an operator table)",
            ja=f"セグメントの条件の値 {value!r} は使えません。"
            "文字列・数値・true/false・そのリスト・演算子の表のいずれかです。",
        )


def check_segment_filter(flt: Any, where: str) -> dict[str, Any]:
    """The shape a saved filter may have: the contract's filter dict, of plain, bounded values.

    Column names and value types are checked against the member file when the segment is
    used (:func:`bcartnb.filters.validate_filter`): a segment outlives any one member file.
    Here only what would make the file unreadable or a value hostile is refused.
    """
    if not isinstance(flt, Mapping):
        raise SettingsError(
            f"{where}: a segment's filter is a table of column: condition, not {flt!r}",
            ja=f"セグメントの絞込条件は「項目: 条件」の表で指定してください（{flt!r} ではなく）。",
        )
    if not flt:
        raise SettingsError(
            f"{where}: the filter is empty (a segment of every member needs no name)",
            ja="絞込条件が空のセグメントは保存できません。条件を指定してください。",
        )
    out: dict[str, Any] = {}
    for key, spec in flt.items():
        if not isinstance(key, str) or not key.strip():
            raise SettingsError(
                f"{where}: filter key {key!r} must be a column name",
                ja=f"セグメントの絞込条件の項目名 {key!r} が不正です。",
            )
        _check_text(key, f"{where}: filter key {key!r}")
        at = f"{where}: filter key {key!r}"
        if isinstance(spec, Mapping):
            unknown = [op for op in spec if op not in OPERATORS]
            if unknown or not spec:
                raise SettingsError(
                    f"{at}: unknown operator {(unknown or ['(none)'])[0]!r}; use one of "
                    + ", ".join(OPERATORS),
                    ja=f"セグメントの絞込条件「{key}」の演算子 {(unknown or ['(none)'])[0]!r}"
                    " は使えません。",
                )
            for v in spec.values():
                _check_scalar(v, at)
            out[key] = dict(spec)
        elif isinstance(spec, list | tuple):
            if not spec or len(spec) > _MAX_ITEMS:
                raise SettingsError(
                    f"{at}: a list must hold 1 to {_MAX_ITEMS} values",
                    ja=f"セグメントの絞込条件「{key}」のリストは1〜{_MAX_ITEMS}個の値です。",
                )
            for v in spec:
                _check_scalar(v, at)
            out[key] = list(spec)
        else:
            _check_scalar(spec, at)
            out[key] = spec
    return out


def combine_filters(
    segment: Mapping[str, Any],
    own: Mapping[str, Any],
    columns: Any,
    segment_name: str,
) -> dict[str, Any]:
    """The segment's filter ANDed with a campaign's own ``filter``; a column in both is an error.

    ``columns`` are the member columns (a frame or names): ``pref`` and ``都道府県`` are the same
    column, so naming it in both is caught whichever way each was written.
    """
    names = list(columns)
    seen = {resolve_column(k, names) or k: k for k in segment}
    for key in own:
        column = resolve_column(key, names) or key
        if column in seen:
            raise SettingsError(
                f"filter key {key!r} is also in segment {segment_name!r} (as {seen[column]!r}); "
                "a column may be narrowed in one of them only",
                ja=f"絞込条件「{key}」はセグメント「{segment_name}」にもあります（{seen[column]!r}）。"
                "同じ項目はどちらか一方で指定してください。",
            )
    return {**segment, **own}


class SegmentStore:
    """The segments file: ``names``, ``get``, ``all``, ``save`` (atomic, locked), ``delete``."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)

    # --- reading ------------------------------------------------------------------------

    def _read(self) -> dict[str, dict[str, Any]]:
        try:  # not a FIFO or a device, which would block or never end
            with open_regular(self.path, "セグメントのファイル", SettingsError) as fh:
                raw = fh.read(_MAX_FILE + 1)
        except FileNotFoundError:
            return {}
        except IsADirectoryError:
            raise SettingsError(
                f"{self.path}: the segments file is a directory",
                ja="セグメントのファイルがフォルダーになっています。",
            ) from None
        if len(raw) > _MAX_FILE:
            raise SettingsError(
                f"{self.path}: the segments file is larger than {_MAX_FILE:,} bytes",
                ja="セグメントのファイルが大きすぎます。",
            )
        try:
            data = tomllib.loads(raw.decode("utf-8-sig"))
        except UnicodeDecodeError as err:
            raise SettingsError(
                f"{self.path}: not UTF-8 text: {err}",
                ja="セグメントのファイルが UTF-8 ではありません。",
            ) from err
        except tomllib.TOMLDecodeError as err:
            raise SettingsError(
                f"{self.path}: not valid TOML: {err}",
                ja="セグメントのファイルの書き方に誤りがあります。",
            ) from err
        out: dict[str, dict[str, Any]] = {}
        for name, entry in data.items():
            where = f"{self.path}: segment {name!r}"
            check_segment_name(name)
            if not isinstance(entry, dict) or "filter" not in entry:
                raise SettingsError(
                    f"{where}: needs a [{name!r}.filter] table",
                    ja=f"セグメント「{name}」に絞込条件（filter）がありません。",
                )
            unknown = sorted(set(entry) - {"filter", "saved_at"})
            if unknown:
                raise SettingsError(
                    f"{where}: unknown key {unknown[0]!r} (known: filter, saved_at)",
                    ja=f"セグメント「{name}」に不明な項目「{unknown[0]}」があります。",
                )
            out[unicodedata.normalize("NFC", name)] = {
                "filter": check_segment_filter(entry["filter"], where),
                "saved_at": entry.get("saved_at"),
            }
        return out

    def names(self) -> list[str]:
        """The segment names, in the file's order (the order they were first saved)."""
        return list(self._read())

    def all(self) -> dict[str, dict[str, Any]]:
        """name → ``{"filter": …, "saved_at": …}`` for every segment."""
        return self._read()

    def get(self, name: str) -> dict[str, Any]:
        """The filter saved under ``name``; an unknown name is an error listing the known ones."""
        key = check_segment_name(name)
        segments = self._read()
        if key not in segments:
            have = "、".join(segments) or "（なし）"
            raise SettingsError(
                f"segment {name!r} not found in {self.path} (have: {', '.join(segments)})",
                ja=f"セグメント「{name}」はありません。保存されているセグメント: {have}",
            )
        return dict(segments[key]["filter"])

    def describe(self, name: str) -> str:
        """The segment's filter in words, as the report and ``bcartnb segments`` print it."""
        return describe_filter(self.get(name))

    # --- writing ------------------------------------------------------------------------

    @contextmanager
    def _locked(self) -> Iterator[None]:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        lock = self.path.with_name(self.path.name + ".lock")
        with lock.open("a") as fh:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fh.fileno(), fcntl.LOCK_UN)

    def _write(self, segments: Mapping[str, Mapping[str, Any]]) -> None:
        data = {
            name: {
                **({"saved_at": entry["saved_at"]} if entry.get("saved_at") else {}),
                "filter": dict(entry["filter"]),
            }
            for name, entry in segments.items()
        }
        text = "# bcartnb セグメント（保存した絞込条件）。bcartnb と手で編集できます。\n\n"
        text += tomli_w.dumps(data)
        write_atomically(self.path, text, mode=0o600)

    def save(
        self,
        name: str,
        filter: Mapping[str, Any],
        *,
        overwrite: bool = False,
        now: dt.datetime | None = None,
    ) -> str:
        """Save ``filter`` under ``name``; an existing name is refused unless ``overwrite``.

        Returns the name as stored (NFC). The file is re-read under the lock, so a segment
        another process saved a moment ago is kept.
        """
        key = check_segment_name(name)
        flt = check_segment_filter(filter, f"segment {key!r}")
        with self._locked():
            segments = self._read()
            if key in segments and not overwrite:
                raise SettingsError(
                    f"segment {key!r} already exists in {self.path}",
                    ja=f"セグメント「{key}」はすでにあります。上書きするか、別の名前にしてください。",
                )
            stamp = (now or now_tokyo()).replace(microsecond=0)
            segments[key] = {"filter": flt, "saved_at": stamp}
            self._write(segments)
        return key

    def delete(self, name: str) -> None:
        key = check_segment_name(name)
        with self._locked():
            segments = self._read()
            if key not in segments:
                raise SettingsError(
                    f"segment {name!r} not found in {self.path}",
                    ja=f"セグメント「{name}」はありません。",
                )
            del segments[key]
            self._write(segments)
