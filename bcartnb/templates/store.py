"""The template store (メールテンプレート管理): one file per template in the shop's folder.

Writes are atomic (a temporary file then ``os.replace``), so a crash or a full disk never
leaves half a template behind; a template is stored only after it renders.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from bcartnb.exceptions import TemplateError
from bcartnb.files import read_regular, write_atomically
from bcartnb.near import near_names, quoted
from bcartnb.templates.checks import check_renders
from bcartnb.templates.fields import SAMPLE_MEMBER
from bcartnb.templates.fileformat import (
    SUFFIX,
    Template,
    check_name,
    parse_template_file,
    render_template_file,
)

__all__ = ["TemplateStore"]


class TemplateStore:
    """Templates as files in ``folder``: list, read, save (checked), rename, delete.

    Writes are atomic (a temporary file then ``os.replace``), so a crash or a full disk never
    leaves half a template behind.
    """

    def __init__(self, folder: str | os.PathLike[str]) -> None:
        self.folder = Path(folder)

    def path(self, name: str) -> Path:
        return self.folder / (check_name(name) + SUFFIX)

    def list(self) -> list[str]:
        """Template names, sorted; other files in the folder are ignored."""
        if not self.folder.is_dir():
            return []
        names = []
        for p in self.folder.iterdir():
            if p.suffix == SUFFIX and p.is_file():
                try:
                    names.append(check_name(p.name[: -len(SUFFIX)]))
                except TemplateError:
                    continue
        return sorted(names)

    def get(self, name: str) -> Template:
        path = self.path(name)
        try:  # not a FIFO or a device, which would block or never end
            text = read_regular(path, "テンプレートファイル", TemplateError).decode("utf-8")
        except FileNotFoundError:
            raise self._not_found(name) from None
        except UnicodeDecodeError as err:
            raise TemplateError(
                f"{path}: not UTF-8 text: {err}",
                ja=f"テンプレートファイル {path} が UTF-8 の文字ではありません。",
            ) from err
        except OSError as err:  # a folder, no permission
            raise TemplateError(
                f"{path}: cannot be read: {err.strerror or err}",
                ja=f"テンプレートファイル {path} を読めません。",
            ) from err
        return parse_template_file(text, check_name(name), str(path))

    def save(self, template: Template, sample_member: Mapping[str, Any] | None = None) -> Path:
        """Store ``template`` after it rendered for ``sample_member`` (default SAMPLE_MEMBER).

        A template that cannot render is refused here, in the template screen, rather than at
        send time in front of 10,000 members.
        """
        name = check_name(template.name)
        if "\n" in template.subject or "\r" in template.subject:
            raise TemplateError(
                f"template {name!r}: the subject must be one line",
                ja=f"テンプレート「{name}」の件名は1行で書いてください。",
            )
        check_renders(template, SAMPLE_MEMBER if sample_member is None else sample_member)
        self.folder.mkdir(parents=True, exist_ok=True)
        path = self.path(name)
        self._write(path, render_template_file(template))
        return path

    def rename(self, old: str, new: str) -> None:
        src, dst = self.path(old), self.path(new)
        if not src.is_file():
            raise TemplateError(
                f"template {old!r} not found in {self.folder}",
                ja=f"テンプレート「{old}」が {self.folder} にありません。",
            )
        if dst.exists() and not src.samefile(dst):
            raise TemplateError(
                f"template {new!r} already exists in {self.folder}",
                ja=f"テンプレート「{new}」はすでに {self.folder} にあります。",
            )
        os.replace(src, dst)

    def delete(self, name: str) -> None:
        path = self.path(name)
        try:
            path.unlink()
        except FileNotFoundError:
            raise TemplateError(
                f"template {name!r} not found in {self.folder}",
                ja=f"テンプレート「{name}」が {self.folder} にありません。",
            ) from None

    def _not_found(self, name: str) -> TemplateError:
        """No such template: the near names first (a typo), else every name there is."""
        have = self.list()
        near = near_names(name, have)
        hint_ja = f"近い名前: {quoted(near)}。" if near else ""
        hint = f"; did you mean {', '.join(near)}?" if near else ""
        return TemplateError(
            f"template {name!r} not found in {self.folder}{hint} (have: {', '.join(have)})",
            ja=f"テンプレート「{name}」が {self.folder} にありません。{hint_ja}",
        )

    @staticmethod
    def _write(path: Path, text: str) -> None:
        write_atomically(path, text, mode=0o600)
