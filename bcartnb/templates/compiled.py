"""A template compiled once and rendered per member, with errors that say where.

Every failure of a render (a missing field, the sandbox refusing, a limit reached, any
exception of a filter) becomes one TemplateError naming the template, the part (件名・本文),
the line and the member, in Japanese first; a dry run ends on it instead of a traceback.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Mapping
from types import TracebackType
from typing import Any

import jinja2
from jinja2 import meta, nodes
from jinja2.exceptions import SecurityError

from bcartnb.exceptions import TemplateError
from bcartnb.settings import MAX_MAIL_BYTES, RENDER_TIMEOUT
from bcartnb.templates.sandbox import Overrun, guard_loops, make_environment

__all__ = ["CompiledTemplate", "RenderDeclined", "compile_template"]


class RenderDeclined(Exception):
    """Raised by a caller's filter or ``finalize`` hook to abandon a render on purpose.

    :meth:`CompiledTemplate.render` lets it through untouched (every other exception becomes a
    TemplateError), so a caller with a second way to render can take it: the composer's fast
    HTML path declines a member whose values it cannot carry byte for byte.
    """


_PART_JA = {"subject": "件名", "body": "本文"}
_UNDEFINED_RE = re.compile(r"^'(?P<name>[^']+)' is undefined$")


class CompiledTemplate:
    """A template compiled once; renders one member at a time with errors that say where.

    ``part`` is ``subject``, ``body`` or another label used in messages. Only the fields the
    template uses are looked up per member, which keeps rendering 10,000 members cheap.
    """

    def __init__(
        self,
        source: str,
        name: str,
        part: str,
        html: bool,
        filters: Mapping[str, Callable[..., Any]] | None = None,
        finalize: Callable[[Any], Any] | None = None,
        *,
        timeout: float = RENDER_TIMEOUT,
        max_size: int = MAX_MAIL_BYTES,
    ) -> None:
        self.name = name
        self.part = part
        self.html = html
        self.source = source
        self.env = make_environment(html, timeout=timeout, max_size=max_size)
        self.env.filters.update(filters or {})
        self.env.finalize = finalize  # read by the code generator: set before compiling
        self.filename = f"<{name}:{part}>"
        try:
            ast = self.env.parse(source, name=self.filename)
            guard_loops(ast, self.env)
            code = self.env.compile(ast, name=self.filename, filename=self.filename)
        except jinja2.TemplateSyntaxError as err:
            raise TemplateError(
                f"{self.where(err.lineno)}: {err.message}",
                ja=f"{self.where_ja(err.lineno)}の書き方に誤りがあります（{err.message}）。",
            ) from err
        # A plain dict, not make_globals()'s ChainMap: Jinja copies the globals into every
        # render's context, and iterating a ChainMap was a fifth of composing a mail.
        self.template = self.env.template_class.from_code(
            self.env, code, dict(self.env.make_globals(None))
        )
        self.names = frozenset(meta.find_undeclared_variables(ast))
        #: the first line each field is read on, for messages about a field
        self.field_lines: dict[str, int] = {}
        for node in ast.find_all(nodes.Name):
            if node.ctx == "load" and node.name in self.names:
                self.field_lines.setdefault(node.name, node.lineno)
        self.constant = not self.names and "{" not in source

    def where(self, line: int | None) -> str:
        return f"template {self.name!r} ({self.part})" + (f" line {line}" if line else "")

    def where_ja(self, line: int | None) -> str:
        part = _PART_JA.get(self.part, self.part)
        if self.name == "draft":  # typed in the form, not a stored template
            where = f"入力した{part}"
        else:
            where = f"テンプレート「{self.name}」の{part}"
        return where + (f" {line}行目" if line else "")

    def render(self, context: Mapping[str, Any], member_id: Any = None) -> str:
        """Render; any failure becomes a one-line TemplateError naming template, line, field."""
        self.env.deadline = time.monotonic() + self.env.timeout
        try:
            return self.template.render(context)
        except Overrun as err:
            line = self._line(err.__traceback__)
            who = f" for member {member_id}" if member_id is not None else ""
            whose = f"会員 {member_id} のメールの" if member_id is not None else ""
            raise TemplateError(
                f"{self.where(line)}{who}: {err}", ja=f"{self.where_ja(line)}: {whose}{err.ja}。"
            ) from err
        except jinja2.UndefinedError as err:
            line = self._line(err.__traceback__)
            m = _UNDEFINED_RE.match(str(err))
            who = f" for member {member_id}" if member_id is not None else ""
            field = m.group("name") if m else None
            msg = f"field {field!r} is missing or empty{who}" if field else f"{err}{who}"
            whose = f"会員 {member_id} の" if member_id is not None else ""
            what = (
                f"{whose}「{field}」が空欄か、そういう項目がありません。"
                "会員データを直すか、テンプレートからその項目を外してください。"
                if field
                else f"{whose}メールを作れません。"
            )
            raise TemplateError(
                f"{self.where(line)}: {msg}", ja=f"{self.where_ja(line)}: {what}"
            ) from err
        except RenderDeclined:
            raise
        except SecurityError as err:
            line = self._line(err.__traceback__)
            raise TemplateError(
                f"{self.where(line)}: not allowed in a template: {err}",
                ja=f"{self.where_ja(line)}: テンプレートでは使えない書き方です。",
            ) from err
        except TemplateError:
            raise
        except Exception as err:  # MemoryError and RecursionError too: the kernel lives on
            line = self._line(err.__traceback__)
            who = f" (member {member_id})" if member_id is not None else ""
            raise TemplateError(
                f"{self.where(line)}: {type(err).__name__}: {err}{who}",
                ja=f"{self.where_ja(line)}: メールを作れません（{type(err).__name__}）。",
            ) from err

    def _line(self, tb: TracebackType | None) -> int | None:
        line = None
        while tb is not None:
            if tb.tb_frame.f_code.co_filename == self.filename:
                line = tb.tb_lineno
            tb = tb.tb_next
        return line


def compile_template(
    source: str,
    name: str,
    part: str,
    html: bool = False,
    filters: Mapping[str, Callable[..., Any]] | None = None,
    finalize: Callable[[Any], Any] | None = None,
    *,
    timeout: float = RENDER_TIMEOUT,
    max_size: int = MAX_MAIL_BYTES,
) -> CompiledTemplate:
    """Compile ``source`` once in the sandbox (``html`` turns autoescape on).

    ``finalize`` sees every ``{{ }}`` value before it is escaped (Jinja's hook of that name);
    ``timeout`` (seconds a render may take) and ``max_size`` (the largest value or output,
    in characters) are the settings' ``render_timeout`` and ``max_mail_bytes``.
    """
    return CompiledTemplate(
        source, name, part, html, filters, finalize, timeout=timeout, max_size=max_size
    )
