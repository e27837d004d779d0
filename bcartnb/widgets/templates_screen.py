"""メールテンプレート管理 in the wizard: list, preview, edit, save, delete, import from B-Cart.

The screen is a face on :class:`~bcartnb.templates.TemplateStore`, the very folder the CLI and
the campaign notebook read, so a template saved here is the one ``bcartnb run --template``
sends; every refusal (a bad name, a field that does not exist, a template that cannot render)
is the store's own, in its Japanese words. Nothing is overwritten or deleted without a second
click on a question that names the template. The preview renders the template for a real
member of the loaded file (the sample member when none is loaded) through
:func:`~bcartnb.compose.preview`, the confirmation screen's own renderer.
"""

from __future__ import annotations

import html
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any, Final, Protocol

import ipywidgets as widgets
import pandas as pd

from bcartnb.compose import Composer, Draft, Preview, preview
from bcartnb.settings import Settings
from bcartnb.templates import SAMPLE_MEMBER, Template, TemplateStore, check_name
from bcartnb.templates.bcart_import import import_bcart_text

from ._common import Status, fit, hide, row, show
from .compose_step import ComposeStep

__all__ = [
    "Ask",
    "SaveAsTemplate",
    "TemplateTools",
    "TemplatesScreen",
    "attach_save",
    "preview_html",
    "sample_member",
    "template_tools",
]


def _wide(height: str | None = None) -> widgets.Layout:
    """48em, never wider than a narrow notebook (600 px)."""
    return widgets.Layout(width="48em", max_width="100%", height=height)


_LABEL: Final = {"description_width": "7em"}


class Ask(widgets.HBox):  # type: ignore[misc]
    """A question with a yes and a cancel button, shown only while it waits for an answer."""

    def __init__(self, css: str, yes: str, *, danger: bool = False) -> None:
        self.text = widgets.HTML("")
        self.yes = widgets.Button(description=yes, button_style="danger" if danger else "warning")
        self.yes.add_class(f"{css}-yes")
        self.no = widgets.Button(description="キャンセル")
        self.no.add_class(f"{css}-no")
        fit(self.yes, self.no)
        self._then: Callable[[], None] | None = None
        self.yes.on_click(lambda _b: self._answer(True))
        self.no.on_click(lambda _b: self._answer(False))
        super().__init__([self.text, self.yes, self.no])
        self.layout.flex_flow = "row wrap"
        self.add_class(css)
        hide(self)

    def ask(self, question: str, then: Callable[[], None]) -> None:
        self.text.value = f'<b style="color:#b00020">{html.escape(question)}</b>'
        self._then = then
        show(self)

    def _answer(self, yes: bool) -> None:
        then, self._then = self._then, None
        hide(self)
        if yes and then is not None:
            then()


def preview_html(got: Preview) -> str:
    """One rendered member: 件名, then the HTML (as the member sees it) or the text."""
    if got.error:
        return f'<div style="color:#b00020">{html.escape(got.error)}</div>'
    head = (
        f"<div><b>件名</b>: {html.escape(got.subject)}"
        f'<span style="color:#555"> （会員ID {html.escape(str(got.member_id))} で表示）'
        "</span></div>"
    )
    text = f'<pre style="white-space:pre-wrap">{html.escape(got.text)}</pre>'
    if got.html is None:
        return head + text
    frame = (
        f'<iframe sandbox="" srcdoc="{html.escape(got.html, quote=True)}" '
        'style="width:100%;height:24em;border:1px solid #ccc"></iframe>'
    )
    return head + frame + "<details><summary>テキスト版</summary>" + text + "</details>"


def _sample(members: pd.DataFrame) -> pd.DataFrame:
    """The first member of the loaded file, else the sample member every save renders for."""
    if not members.empty:
        return members.head(1)
    return pd.DataFrame([SAMPLE_MEMBER])


def sample_member(members: pd.DataFrame) -> dict[str, Any]:
    """What a save renders for: the sample member, plus each custom column of the loaded file
    with a value it holds (so ``{{ 業種 }}`` is a field, not a typo)."""
    out = dict(SAMPLE_MEMBER)
    for column in members.columns:
        if str(column) not in out:
            present = members[column].dropna()
            out[str(column)] = present.iloc[0] if len(present) else "（見本）"
    return out


class SaveAsTemplate(widgets.VBox):  # type: ignore[misc]
    """「テンプレートとして保存」 under the compose form: what is being composed, under a name."""

    def __init__(
        self,
        store: TemplateStore,
        form: Callable[[], Template],
        saved: Callable[[str], None],
        members: Callable[[], pd.DataFrame],
    ) -> None:
        self.store, self._form, self._saved, self._members = store, form, saved, members
        self.status = Status("bcartnb-save-template-status")  # not the wizard's status line
        self.name = widgets.Text(description="テンプレート名", style=_LABEL)
        self.name.add_class("bcartnb-save-template-name")
        self.save = widgets.Button(description="テンプレートとして保存", icon="save")
        self.save.add_class("bcartnb-save-template")
        self.ask = Ask("bcartnb-save-template-overwrite", "上書き")
        fit(self.save)
        self.save.on_click(lambda _b: self.request())
        super().__init__([row(self.name, self.save), self.ask, self.status.widget])

    def request(self) -> None:
        """Save, after asking when the name is taken; a bad name is the store's error."""
        name = str(self.name.value).strip()
        template = self.status.run(lambda: _named(self._form(), name), [self.save])
        if template is None:
            return
        if template.name in self.store.list():
            self.ask.ask(
                f"テンプレート「{template.name}」はすでにあります。上書きしますか？",
                lambda: self._store(template),
            )
            self.status.clear()
            return
        self._store(template)

    def _store(self, template: Template) -> None:
        sample = sample_member(self._members())
        if self.status.run(lambda: self.store.save(template, sample), [self.save]) is not None:
            self.status.info(f"テンプレート「{template.name}」を保存しました。")
            self._saved(template.name)


def _named(template: Template, name: str) -> Template:
    """The template under ``name``, checked by the store's own rule (and its Japanese error)."""
    return replace(template, name=check_name(name))


def attach_save(
    compose: ComposeStep, store: TemplateStore, members: Callable[[], pd.DataFrame]
) -> SaveAsTemplate:
    """「テンプレートとして保存」 above 戻る / 確認画面へ; the picker lists it at once."""

    def form() -> Template:
        v = compose.values()
        return Template(name="", subject=v["subject"], body=v["body"], html=v["html"])

    saver = SaveAsTemplate(store, form, lambda _name: compose.refresh_templates(), members)
    kids = list(compose.children)
    compose.children = [*kids[:-1], saver, kids[-1]]
    return saver


class TemplatesScreen(widgets.VBox):  # type: ignore[misc]
    """The template screen; ``open_button`` (テンプレート管理) shows and hides it."""

    def __init__(
        self,
        store: TemplateStore,
        settings: Settings,
        members: Callable[[], pd.DataFrame],
        changed: Callable[[], None] = lambda: None,
    ) -> None:
        self.store, self.settings, self._members, self._changed = store, settings, members, changed
        self.status = Status("bcartnb-tpl-status")  # not the wizard's status line
        self.open_button = widgets.Button(description="テンプレート管理", icon="file-text")
        self.open_button.add_class("bcartnb-open-templates")
        self.names = widgets.Select(options=[], rows=6, description="テンプレート", style=_LABEL)
        self.names.add_class("bcartnb-tpl-list")
        self.name = widgets.Text(description="テンプレート名", style=_LABEL)
        self.name.add_class("bcartnb-tpl-name")
        self.subject = widgets.Text(description="件名", style=_LABEL, layout=_wide())
        self.subject.add_class("bcartnb-tpl-subject")
        self.body = widgets.Textarea(description="本文", style=_LABEL, layout=_wide("14em"))
        self.body.add_class("bcartnb-tpl-body")
        self.html = widgets.Checkbox(description="HTMLメール", indent=False)
        self.html.add_class("bcartnb-tpl-html")
        self.new = widgets.Button(description="新規作成", icon="plus")
        self.new.add_class("bcartnb-tpl-new")
        self.show_preview = widgets.Button(description="プレビュー", icon="eye")
        self.show_preview.add_class("bcartnb-tpl-preview-button")
        self.save = widgets.Button(description="保存", button_style="primary", icon="save")
        self.save.add_class("bcartnb-tpl-save")
        self.delete = widgets.Button(description="削除", button_style="danger", icon="trash")
        self.delete.add_class("bcartnb-tpl-delete")
        self.ask_overwrite = Ask("bcartnb-tpl-overwrite", "上書き")
        self.ask_delete = Ask("bcartnb-tpl-confirm-delete", "削除", danger=True)
        self.preview = widgets.HTML("")
        self.preview.add_class("bcartnb-tpl-preview")
        self.paste = widgets.Textarea(
            placeholder="件名：【{会社名}様】新商品のご案内\n本文：\n{会社名}\n{担当者名} 様\n…",
            description="Bカートから",
            style=_LABEL,
            layout=_wide("8em"),
        )
        self.paste.add_class("bcartnb-tpl-paste")
        self.import_button = widgets.Button(description="貼り付けた内容を取り込む", icon="paste")
        self.import_button.add_class("bcartnb-tpl-import")
        fit(self.open_button, self.new, self.show_preview, self.save, self.delete)
        fit(self.import_button)
        self.names.observe(lambda _c: self.load(), names="value")
        self.new.on_click(lambda _b: self.clear())
        self.show_preview.on_click(lambda _b: self.render_preview())
        self.save.on_click(lambda _b: self.request_save())
        self.delete.on_click(lambda _b: self.request_delete())
        self.import_button.on_click(lambda _b: self.import_pasted())
        self.open_button.on_click(lambda _b: self.toggle())
        super().__init__(
            [
                widgets.HTML(
                    "<b>メールテンプレート管理</b>"
                    f'<div style="color:#555">保存先: {html.escape(str(store.folder))}'
                    "（コマンドラインと同じテンプレートです）</div>"
                ),
                self.names,
                self.name,
                self.subject,
                self.body,
                self.html,
                row(self.new, self.show_preview, self.save, self.delete),
                self.ask_overwrite,
                self.ask_delete,
                self.status.widget,
                self.preview,
                widgets.HTML(
                    "<b>Bカートのテンプレートを取り込む</b>: Bカートのテンプレート画面の"
                    "件名と本文をコピーし、「件名：」の行に続けて貼り付けてください。"
                ),
                self.paste,
                self.import_button,
            ]
        )
        self.add_class("bcartnb-templates")
        hide(self)

    @property
    def controls(self) -> list[widgets.Widget]:
        return [
            self.names,
            self.name,
            self.subject,
            self.body,
            self.html,
            self.new,
            self.show_preview,
            self.save,
            self.delete,
            self.paste,
            row(self.import_button),
        ]

    def toggle(self) -> None:
        """テンプレート管理: open (the list read again: the CLI may have added one) or close."""
        if self.layout.display == "none":
            self.refresh()
            show(self)
        else:
            hide(self)

    def refresh(self, current: str | None = None) -> None:
        names = self.status.run(self.store.list)
        if names is None:
            return
        self.names.options = names
        self.names.value = current if current in names else None
        self.status.clear()

    def form(self) -> Template:
        return Template(
            name=str(self.name.value).strip(),
            subject=str(self.subject.value),
            body=str(self.body.value),
            html=bool(self.html.value),
        )

    def load(self) -> None:
        """A template picked in the list: into the editor, and previewed."""
        name = self.names.value
        if not name:
            return
        template = self.status.run(lambda: self.store.get(name), self.controls)
        if template is None:
            return
        self.name.value, self.subject.value = template.name, template.subject
        self.body.value, self.html.value = template.body, template.html
        self.render_preview()

    def clear(self) -> None:
        self.names.value = None
        self.name.value = self.subject.value = self.body.value = ""
        self.html.value = False
        self.preview.value = ""

    def render_preview(self) -> None:
        """The editor's template for a member of the file, as the confirmation would show it."""
        form = self.form()

        def render() -> list[Preview]:
            draft = Draft(  # a template's preview, not a campaign's mail: no tracked links
                subject=form.subject,
                body=form.body,
                html=form.html,
                template=form.name or None,
                track=False,
            )
            sample = _sample(self._members())
            composer = Composer(draft, self.settings, "preview", columns=sample.columns)
            return preview(composer, sample, n=1)

        got = self.status.run(render, self.controls, busy="プレビューを作成しています…")
        if got:
            self.preview.value = preview_html(got[0])

    def request_save(self) -> None:
        """保存: the store checks; a name another template has is saved only after 上書き."""
        form = self.form()
        template = self.status.run(lambda: _named(form, form.name), self.controls)
        if template is None:
            return
        if template.name in self.store.list() and template.name != self.names.value:
            self.ask_overwrite.ask(
                f"テンプレート「{template.name}」はすでにあります。上書きしますか？",
                lambda: self._save(template),
            )
            return
        self._save(template)

    def _save(self, template: Template) -> None:
        sample = sample_member(self._members())
        if self.status.run(lambda: self.store.save(template, sample), self.controls) is None:
            return
        self.refresh(template.name)
        self._changed()
        self.status.info(f"テンプレート「{template.name}」を保存しました。")

    def request_delete(self) -> None:
        """削除: only after 「削除しますか？」 is answered 削除."""
        name = self.names.value
        if not name:
            self.status.error("削除するテンプレートを一覧から選んでください。")
            return
        self.ask_delete.ask(f"テンプレート「{name}」を削除しますか？", lambda: self._delete(name))

    def _delete(self, name: str) -> None:
        def delete() -> bool:
            self.store.delete(name)
            return True

        if not self.status.run(delete, self.controls):
            return
        self.clear()
        self.refresh()
        self._changed()
        self.status.info(f"テンプレート「{name}」を削除しました。")

    def import_pasted(self) -> None:
        """A pasted B-Cart template into the editor (saved only by 保存), saying what stayed."""
        columns: Any = self._members().columns
        name = str(self.name.value).strip() or "Bカートから取り込み"
        got = self.status.run(lambda: import_bcart_text(str(self.paste.value), name, columns))
        if got is None:
            return
        self.names.value = None
        t = got.template
        self.name.value, self.subject.value, self.body.value, self.html.value = (
            t.name,
            t.subject,
            t.body,
            t.html,
        )
        self.render_preview()
        note = "取り込みました。内容を確かめて「保存」を押してください。"
        if got.unmapped:
            note += (
                f"差し込み項目にできなかった置き換え文字（そのまま文字で残しています）: "
                f"{'、'.join(got.unmapped)}"
            )
            self.status.error(note)
        else:
            self.status.info(note)


class _Wizard(Protocol):
    """What the tools read of the wizard (the member file changes when another is loaded)."""

    store: TemplateStore
    settings: Settings
    compose: ComposeStep
    members: pd.DataFrame


@dataclass(frozen=True)
class TemplateTools:
    """The screen, the compose step's saver, and what the first step shows (button, screen)."""

    screen: TemplatesScreen
    saver: SaveAsTemplate
    widget: widgets.VBox


def template_tools(wizard: _Wizard) -> TemplateTools:
    """テンプレート管理 on the first step and 「テンプレートとして保存」 under the form; a change
    in either lists the templates again in the form's picker."""
    compose = wizard.compose
    screen = TemplatesScreen(
        wizard.store, wizard.settings, lambda: wizard.members, compose.refresh_templates
    )
    saver = attach_save(compose, wizard.store, lambda: wizard.members)
    box = widgets.VBox([row(screen.open_button), screen])
    box.add_class("bcartnb-template-tools")
    return TemplateTools(screen, saver, box)
