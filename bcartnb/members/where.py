"""Where a member source went wrong: one-line errors naming the file, row and column.

Every reader of members (the CSV's bytes, its parse, the typing of its columns, a snapshot
file) says what it refuses the same way, Japanese first, so the one to fix is found without
opening the file: the wording lives here once.
"""

from __future__ import annotations

from pathlib import Path

from bcartnb.exceptions import MembersFileError

__all__ = ["Where", "show"]


class Where:
    """Builds one-line error messages that name the file, row and column."""

    def __init__(self, path: Path, label: tuple[str, str] | None = None) -> None:
        self.path = path
        self.label = label

    def error(
        self, message: str, row: int | None = None, column: str | None = None, *, ja: str = ""
    ) -> MembersFileError:
        where = self.label[0] if self.label else str(self.path)
        if row is not None:
            where += f": row {row}"
        if column is not None:
            where += f", column {column}" if row is not None else f": column {column}"
        return MembersFileError(f"{where}: {message}", ja=ja)

    def ja(self, text: str) -> str:
        """The Japanese first line: which file, then ``text``."""
        return f"{self.label[1] if self.label else f'会員ファイル {self.path}'} {text}"

    def unreadable(self, err: OSError, directory: str, directory_ja: str) -> MembersFileError:
        """A member file that is not there, a directory, or one the system will not let us
        read. A directory gets the reader's own words (``directory``, ``directory_ja``): a
        CSV and a snapshot are asked for apart."""
        if isinstance(err, IsADirectoryError):
            return self.error(directory, ja=self.ja(directory_ja))
        if isinstance(err, FileNotFoundError):
            return self.error(
                "no such member file", ja=self.ja("が見つかりません。パスを確かめてください。")
            )
        return self.error(
            f"cannot be read: {err.strerror or err}",
            ja=self.ja("を読めません（読み取りの権限などを確かめてください）。"),
        )


def show(value: object) -> str:
    """A value as an error quotes it: its repr, cut to 60 characters."""
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "...'"
