"""The template store (メールテンプレート管理) and the sandboxed Jinja2 environment.

A shop keeps its recurring mails as templates: one plain UTF-8 file per template in the
templates folder (``Settings.templates``), named ``<テンプレート名>.txt`` so that a double
click opens it in any editor. The file starts with a small TOML header between two ``+++``
lines (the "front matter" of Hugo and many static-site tools), then the body, verbatim::

    +++
    subject = "【{{ 会社名 }} 様】新商品のご案内"
    html = false
    +++
    {{ 会社名 }}
    {{ 担当者名 }} 様

    いつもお世話になっております。…

``subject`` (件名) is required; ``html`` (HTMLメールで送信) defaults to false. The body needs no
quoting or escaping of any kind, which is why it is not a TOML string: a shop person pastes
the HTML from their newsletter tool and is done. A BOM and Windows line ends are accepted.

Merge fields are written ``{{ name }}`` with the canonical member column or a Japanese alias.
A field that is empty for a member is an *error* (``StrictUndefined``), never a blank in a
sent mail; templates run in Jinja2's sandbox, so ``{{ ''.__class__ }}`` fails cleanly.

==========================  ==================================================================
alias                       value
==========================  ==================================================================
``会員ID``, ``Bカート会員ID``  ``id``
``貴社独自会員ID``            ``ext_id``
``会社名``                   ``comp_name``
``会社名カナ``                ``comp_name_kana``
``担当部署``, ``部署名``       ``department``
``担当者名``                 ``tanto_last_name + " " + tanto_first_name`` (the parts present;
                            missing only when both are)
``担当者姓``                 ``tanto_last_name``
``担当者名前``                ``tanto_first_name``
``メールアドレス``             ``email``
``電話番号``                 ``tel``
``携帯番号``                 ``mobile_phone``
``郵便番号``                 ``zip``
``都道府県``                 ``pref``
``市区町村``                 ``address1``
``町域番地``                 ``address2``
``ビル建物名``                ``address3``
``住所``                    ``pref + address1 + address2``, then ``" " + address3`` (parts present)
``価格グループID``             ``price_group_id``
``営業担当ID``               ``salesman_id``
``状態``                    ``status``
``登録日時``                 ``created_at``
``更新日時``                 ``updated_at``
``署名``                    ``signature``: the shop's signature (設定している署名), not a member
                            field; see below
==========================  ==================================================================

``{{ signature }}`` (or ``{{ 署名 }}``) places the shop's signature where the template wants it:
in an HTML template it is HTML (escaped text, ``<br>`` between lines, each URL and mail address a
link, or the settings' ``signature_html``), so put it where a paragraph's content may go, e.g.
``<p class="signature">{{ signature }}</p>``; in a text template it is the signature's text. It
is empty when 「設定している署名を挿入」 is off. Without it the signature goes inside the body's
main container (the rule is in :mod:`bcartnb.compose`) or at the end of a text mail.

Templates are bounded, per render, by the settings ``render_timeout`` (seconds) and
``max_mail_bytes``: the sandbox checks its clock on every call, attribute and loop step,
and refuses any value larger than a whole mail may be (``'a' * 10**8``) or an
integer power too big to print (``(10**100000)**100000``) before computing it. Both are
TemplateErrors naming template, line and member, so a dry run ends instead of hanging.

Custom fields (カスタム項目) are reachable by their column name when it is an identifier
(``{{ 業種 }}``), and every field by ``{{ member["カスタム項目(1)"] }}``. A value counts as missing
when it is None, pandas NA/NaT, NaN or a blank string.
"""

from __future__ import annotations

import difflib
import functools
import os
import re
import string
import time
import tomllib
import unicodedata
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

import jinja2
from jinja2 import meta, nodes
from jinja2.exceptions import SecurityError
from jinja2.runtime import Context
from jinja2.sandbox import SandboxedEnvironment

from bcartnb import htmldepth
from bcartnb.exceptions import TemplateError
from bcartnb.files import read_regular, write_atomically
from bcartnb.members import CANONICAL_COLUMNS, COLUMN_LABELS
from bcartnb.settings import MAX_MAIL_BYTES, RENDER_TIMEOUT

__all__ = [
    "COMPOSER_FIELDS",
    "FIELD_ALIASES",
    "SAMPLE_MEMBER",
    "SIGNATURE_FIELDS",
    "UNSUBSCRIBE_TOKEN_FIELD",
    "CompiledTemplate",
    "LimitedSandbox",
    "RenderDeclined",
    "Template",
    "TemplateStore",
    "check_fields",
    "check_name",
    "check_renders",
    "columns_for",
    "compile_template",
    "context_builder",
    "field_label",
    "is_missing",
    "make_environment",
    "merge_fields",
    "parse_template_file",
    "render_template_file",
]

SUFFIX = ".txt"
_FRONT = "+++"
_MAX_NAME = 100
_BAD_NAME_CHARS = set('/\\:*?"<>|')
_WINDOWS_RESERVED = {"CON", "PRN", "AUX", "NUL"} | {
    f"{p}{i}" for p in ("COM", "LPT") for i in range(1, 10)
}


def _full_name(member: Mapping[str, Any]) -> Any:
    parts = [member.get(k) for k in ("tanto_last_name", "tanto_first_name")]
    present = [str(p).strip() for p in parts if not is_missing(p)]
    return " ".join(present) if present else None


def _address(member: Mapping[str, Any]) -> Any:
    head = "".join(
        str(member.get(k)).strip()
        for k in ("pref", "address1", "address2")
        if not is_missing(member.get(k))
    )
    tail = member.get("address3")
    if not is_missing(tail):
        head = f"{head} {str(tail).strip()}" if head else str(tail).strip()
    return head or None


#: Japanese alias → canonical column, or a function of the member row (None when missing).
FIELD_ALIASES: dict[str, str | Callable[[Mapping[str, Any]], Any]] = {
    "会員ID": "id",
    "Bカート会員ID": "id",
    "貴社独自会員ID": "ext_id",
    "会社名": "comp_name",
    "会社名カナ": "comp_name_kana",
    "担当部署": "department",
    "部署名": "department",
    "担当者名": _full_name,
    "担当者姓": "tanto_last_name",
    "担当者名前": "tanto_first_name",
    "メールアドレス": "email",
    "電話番号": "tel",
    "携帯番号": "mobile_phone",
    "郵便番号": "zip",
    "都道府県": "pref",
    "市区町村": "address1",
    "町域番地": "address2",
    "ビル建物名": "address3",
    "住所": _address,
    "価格グループID": "price_group_id",
    "営業担当ID": "salesman_id",
    "状態": "status",
    "登録日時": "created_at",
    "更新日時": "updated_at",
}

#: The names that place the shop's signature (filled by the composer, not from the member).
SIGNATURE_FIELDS = frozenset({"signature", "署名"})
#: The member's signed unsubscribe token (bcartnb.hygiene.tokens), filled by the composer.
UNSUBSCRIBE_TOKEN_FIELD = "unsubscribe_token"
#: Every name the composer fills rather than the member row.
COMPOSER_FIELDS = SIGNATURE_FIELDS | {UNSUBSCRIBE_TOKEN_FIELD}

#: The member a template must render against before it is saved: every canonical field set.
SAMPLE_MEMBER: dict[str, Any] = {
    "id": 1,
    "ext_id": "C-0001",
    "comp_name": "株式会社サンプル商事",
    "comp_name_kana": "カブシキガイシャサンプルショウジ",
    "department": "購買部",
    "tanto_last_name": "山田",
    "tanto_first_name": "太郎",
    "email": "taro.yamada@example.co.jp",
    "email_cc": "kobai@example.co.jp",
    "tel": "03-1234-5678",
    "mobile_phone": "090-1234-5678",
    "zip": "100-0001",
    "pref": "東京都",
    "address1": "千代田区",
    "address2": "千代田1-1",
    "address3": "サンプルビル5階",
    "price_group_id": 1,
    "view_group_id": 1,
    "salesman_id": 1,
    "mm_flag": True,
    "status": "有効",
    "created_at": "2025-04-01 09:00:00",
    "updated_at": "2025-10-01 09:00:00",
}


def is_missing(value: Any) -> bool:
    """None, pandas NA/NaT, NaN and blank strings: the values a mail must never show as blank."""
    if value is None:
        return True
    if isinstance(value, str):
        return not value.strip()
    if isinstance(value, float):
        return value != value
    # pandas.NA and NaT without importing pandas here: both refuse bool() or equal nothing.
    try:
        return bool(value != value)
    except (TypeError, ValueError):
        return True


@dataclass(frozen=True)
class Template:
    """One stored template: what the compose screen's テンプレート選択 fills in."""

    name: str
    subject: str
    body: str
    html: bool = False


class _Overrun(Exception):
    """A render ran out of time or grew past the size limit (see :class:`LimitedSandbox`)."""

    def __init__(self, detail: str, ja: str) -> None:
        super().__init__(detail)
        self.ja = ja


# An integer of this many bits has about 20,000 digits: more than any mail needs, and
# Python refuses to print one over 4,300 digits anyway; computing (10**100000)**100000
# first would take hours.
_MAX_INT_BITS = 1 << 16
_SIZED = (str, bytes, list, tuple, dict, set, frozenset)
# str methods whose result grows with an argument: (name, index of that argument)
_WIDTH_METHODS = {"ljust": 0, "rjust": 0, "center": 0, "zfill": 0}
_PERCENT_SPEC_RE = re.compile(r"%(?:\([^)]*\))?[-#0 +]*(\*|\d+)?(?:\.(\*|\d+))?")


def _wide_format(fmt: str, percent: bool) -> bool:
    """A width or precision of 10**7 or more, or one taken from the arguments (``%*s``,
    ``{:>{w}}``) where no check sees it: the format would build a string that size."""
    if percent:
        sizes = [g for m in _PERCENT_SPEC_RE.finditer(fmt) for g in m.groups() if g]
    else:
        try:
            specs = [spec for _, _, spec, _ in string.Formatter().parse(fmt) if spec]
        except ValueError:
            return False  # str.format refuses it by itself
        if any("{" in spec for spec in specs):
            return True
        sizes = re.findall(r"\d+", " ".join(specs))
    return any(size == "*" or len(size) >= 8 for size in sizes)


def _int_bits(value: Any) -> int:
    return abs(value).bit_length() if isinstance(value, int) else 0


class LimitedSandbox(SandboxedEnvironment):
    """Jinja2's sandbox with a clock and a size limit, so no template runs or grows for ever.

    Jinja's sandbox stops attribute tricks and caps one ``range()`` at 100,000 items, but not
    nested loops, huge powers or ``'a' * 10**8``. Signals cannot bound a render here (a
    Jupyter kernel renders in other threads, the spool in a forked child) and a trace hook
    would slow every render, so the check is cooperative: the deadline is read on every call,
    attribute, item, intercepted operator and loop step (every for loop's iterable is wrapped
    at compile time); sizes are checked before ``*``, ``**``, ``+``, ``%`` and the growing
    str methods and filters, on every value those return, and on the output of a template
    with loops or macros before it is joined. One builtin call can still take long or build
    a large value in a single step (printing a list that holds one huge string many times);
    the next check then stops the render.

    ``deadline`` is set by :meth:`CompiledTemplate.render` for each render.
    """

    #: Jinja's join of output pieces; :func:`_guard_loops` may swap in :meth:`counted_concat`.
    concat: Callable[[Iterable[str]], str] = "".join
    intercepted_binops = frozenset({"*", "**", "+", "%"})  # also keeps them out of constant folding

    def __init__(self, *, timeout: float, max_size: int, **options: Any) -> None:
        super().__init__(**options)
        self.timeout = timeout
        self.max_size = max_size
        self.deadline = float("inf")
        self.globals["lipsum"] = self._lipsum
        self.filters = {name: self._guard_filter(name, f) for name, f in self.filters.items()}
        self.filters["bcnb_loop"] = self._loop

    # -- the two limits --

    def tick(self) -> None:
        if time.monotonic() > self.deadline:
            raise _Overrun(
                f"rendering took longer than render_timeout ({self.timeout:g} s)",
                f"作成が制限時間（{self.timeout:g}秒）を超えました。ループや計算を見直してください",
            )

    def refuse_size(self, size: int, what: str) -> None:
        if size > self.max_size:
            raise _Overrun(
                f"{what} would be {size:,} long, over max_mail_bytes ({self.max_size:,})",
                f"値が大きすぎます（{size:,}、上限 {self.max_size:,} バイト）",
            )

    def checked(self, value: Any, what: str = "a value") -> Any:
        if isinstance(value, _SIZED):
            self.refuse_size(len(value), what)
        return value

    # -- the sandbox's hooks --

    def call(__self, __context: Context, __obj: Any, *args: Any, **kwargs: Any) -> Any:
        __self.tick()
        # str.format comes wrapped by the sandbox (functools.update_wrapper keeps the method)
        owner = getattr(getattr(__obj, "__wrapped__", __obj), "__self__", None)
        if isinstance(owner, str):
            __self._before_str_method(owner, getattr(__obj, "__name__", ""), args)
        return __self.checked(super().call(__context, __obj, *args, **kwargs))

    def getattr(self, obj: Any, attribute: str) -> Any:
        self.tick()
        return self.checked(super().getattr(obj, attribute))

    def getitem(self, obj: Any, argument: Any) -> Any:
        self.tick()
        return self.checked(super().getitem(obj, argument))

    def call_binop(self, context: Context, operator: str, left: Any, right: Any) -> Any:
        self.tick()
        if operator == "**" and isinstance(right, int) and _int_bits(left) > 1 and right > 0:
            if _int_bits(left) * right > _MAX_INT_BITS:
                raise _Overrun(
                    f"the power {left if _int_bits(left) < 64 else 'n'}**{right} is too large",
                    "累乗の結果が大きすぎます",
                )
        elif operator == "*":
            if isinstance(left, int) and isinstance(right, int):
                if _int_bits(left) + _int_bits(right) > _MAX_INT_BITS:
                    raise _Overrun("the product is too large", "掛け算の結果が大きすぎます")
            elif isinstance(left, _SIZED) and isinstance(right, int):
                self.refuse_size(len(left) * right, "a repeated value")
            elif isinstance(right, _SIZED) and isinstance(left, int):
                self.refuse_size(len(right) * left, "a repeated value")
        elif operator == "+" and isinstance(left, _SIZED) and isinstance(right, _SIZED):
            self.refuse_size(len(left) + len(right), "a joined value")
        elif operator == "%" and isinstance(left, str) and _wide_format(left, percent=True):
            raise _Overrun("a format width is too large", "書式の幅が大きすぎます")
        return self.checked(super().call_binop(context, operator, left, right))

    def counted_concat(self, pieces: Iterable[str]) -> str:
        """Jinja's join of the output (and of macros and set blocks), sized before joining.

        Only for templates with loops or macros (:func:`_guard_loops` installs it): without
        them the output is a fixed number of pieces, each already checked. Collecting the
        pieces is cheap (references, made by loops that read the clock); joining them is the
        allocation to refuse.
        """
        collected = list(pieces)
        self.refuse_size(sum(map(len, collected)), "the output")
        return "".join(collected)

    # -- what the hooks do not see --

    def _before_str_method(self, text: str, name: str, args: tuple[Any, ...]) -> None:
        at = _WIDTH_METHODS.get(name)
        if at is not None and len(args) > at and isinstance(args[at], int):
            self.refuse_size(args[at], f"str.{name}() width")
        elif name in ("format", "format_map") and _wide_format(text, percent=False):
            raise _Overrun("a format width is too large", "書式の幅が大きすぎます")
        elif name == "replace" and len(args) >= 2:
            self._before_replace(text, args[0], args[1])
        elif name == "expandtabs":
            tab = args[0] if args and isinstance(args[0], int) else 8
            self.refuse_size(len(text) + text.count("\t") * tab, "str.expandtabs()")
        elif name == "join" and args and isinstance(args[0], list | tuple):
            items = args[0]
            size = sum(len(x) for x in items if isinstance(x, str)) + len(text) * len(items)
            self.refuse_size(size, "str.join()")

    def _before_replace(self, text: Any, old: Any, new: Any) -> None:
        if isinstance(text, str) and isinstance(old, str) and isinstance(new, str):
            hits = text.count(old) if old else len(text) + 1
            self.refuse_size(len(text) + hits * max(0, len(new) - len(old)), "a replaced value")

    def _guard_filter(self, name: str, f: Callable[..., Any]) -> Callable[..., Any]:
        """The built-in filter ``f`` with the clock, the size checks before and after."""
        passes_arg = getattr(f, "jinja_pass_arg", None) is not None

        @functools.wraps(f)
        def guarded(*args: Any, **kwargs: Any) -> Any:
            self.tick()
            value = args[1 if passes_arg else 0] if args else None
            rest = args[2 if passes_arg else 1 :]
            if name in ("center", "indent") and rest and isinstance(rest[0], int):
                lines = value.count("\n") + 1 if isinstance(value, str) else 1
                self.refuse_size(rest[0] * lines, f"the {name} filter's width")
            elif name == "format" and isinstance(value, str) and _wide_format(value, True):
                raise _Overrun("a format width is too large", "書式の幅が大きすぎます")
            elif name == "replace" and len(rest) >= 2:
                self._before_replace(value, rest[0], rest[1])
            elif name == "join" and isinstance(value, list | tuple):
                sep = rest[0] if rest and isinstance(rest[0], str) else ""
                size = sum(len(x) for x in value if isinstance(x, str)) + len(sep) * len(value)
                self.refuse_size(size, "the join filter's result")
            return self.checked(f(*args, **kwargs))

        return guarded

    def _loop(self, iterable: Any) -> Iterator[Any]:
        """Every for loop's iterable: the clock is read at its start and every 256 steps."""
        self.tick()
        for i, item in enumerate(iterable, 1):
            if not i & 255:
                self.tick()
            yield item

    def _lipsum(self, n: int = 5, html: bool = True, min: int = 20, max: int = 100) -> str:
        self.refuse_size(n * max * 12, "lipsum()")  # about 12 characters a word, at most
        return str(jinja2.utils.generate_lorem_ipsum(n, html, min, max))


def make_environment(
    html: bool, *, timeout: float = RENDER_TIMEOUT, max_size: int = MAX_MAIL_BYTES
) -> LimitedSandbox:
    """The one Jinja2 environment kind we render with: sandboxed, limited, strict, escaping
    HTML only.

    Autoescape is on for HTML bodies only: a member value like ``A&B商事`` must be ``A&amp;B``
    in HTML but stay ``A&B`` in a subject or a plain-text body.
    """
    return LimitedSandbox(
        timeout=timeout,
        max_size=max_size,
        undefined=jinja2.StrictUndefined,
        autoescape=html,
        keep_trailing_newline=True,
    )


def _guard_loops(ast: nodes.Template, env: LimitedSandbox) -> None:
    """Make every ``{% for %}`` iterate through the sandbox's clock (the bcnb_loop filter),
    and count the output of a template that can repeat it."""
    for loop in ast.find_all(nodes.For):
        loop.iter = nodes.Filter(loop.iter, "bcnb_loop", [], [], None, None, lineno=loop.lineno)
    if ast.find(nodes.For) or ast.find(nodes.Macro) or ast.find(nodes.CallBlock):
        env.concat = env.counted_concat  # read when the code is loaded: before from_code


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
            _guard_loops(ast, self.env)
            code = self.env.compile(ast, name=self.filename, filename=self.filename)
        except jinja2.TemplateSyntaxError as err:
            raise TemplateError(
                f"template {name!r} ({part}) line {err.lineno}: {err.message}",
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
        except _Overrun as err:
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
            ja = (
                f"{self.where_ja(line)}: {whose}「{field}」が空欄か、そういう項目がありません。"
                "会員データを直すか、テンプレートからその項目を外してください。"
                if field
                else f"{self.where_ja(line)}: {whose}メールを作れません。"
            )
            raise TemplateError(f"{self.where(line)}: {msg}", ja=ja) from err
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


Getter = Callable[[Mapping[str, Any]], Any]


def _getter(name: str) -> Getter | None:
    if name in COMPOSER_FIELDS:
        return None  # the composer's, not the member's
    if name == "member":
        return lambda m: {k: v for k, v in m.items() if not is_missing(v)}
    alias = FIELD_ALIASES.get(name)
    if callable(alias):
        return alias
    column = alias if isinstance(alias, str) else name
    return lambda m: m.get(column)


_ALIAS_COLUMNS: dict[Callable[[Mapping[str, Any]], Any], tuple[str, ...]] = {
    _full_name: ("tanto_last_name", "tanto_first_name"),
    _address: ("pref", "address1", "address2", "address3"),
}


def columns_for(names: Iterable[str]) -> frozenset[str] | None:
    """The member columns a context of ``names`` reads (None: all of them, for ``member``).

    Composing 10,000 members converts every column it reads to Python values; the date
    columns alone cost more than a template render, so columns nobody reads are skipped.
    """
    columns: set[str] = set()
    for name in names:
        if name in COMPOSER_FIELDS:
            continue
        alias = FIELD_ALIASES.get(name)
        if name == "member" or (callable(alias) and alias not in _ALIAS_COLUMNS):
            return None
        if callable(alias):
            columns.update(_ALIAS_COLUMNS[alias])
        else:
            columns.add(alias if isinstance(alias, str) else name)
    return frozenset(columns)


def context_builder(names: Iterable[str]) -> Callable[[Mapping[str, Any]], dict[str, Any]]:
    """A function member row → Jinja context holding only ``names``, missing values left out.

    Leaving a missing value out (rather than passing None) is what makes StrictUndefined
    raise for it, naming the field.
    """
    getters = [(n, g) for n in sorted(names) if (g := _getter(n)) is not None]

    def build(member: Mapping[str, Any]) -> dict[str, Any]:
        ctx: dict[str, Any] = {}
        for name, get in getters:
            value = get(member)
            if not is_missing(value):
                ctx[name] = value
        return ctx

    return build


def merge_fields(columns: Iterable[str]) -> list[tuple[str, str]]:
    """Every field a template may use for members with ``columns``: (field, what it is).

    Japanese aliases first (what a shop writes), then the canonical columns, then custom
    columns (カスタム項目) that are identifiers. The wizard's field list and the "did you mean"
    of :func:`check_fields` both read this, so they cannot disagree.
    """
    out: list[tuple[str, str]] = []
    for alias, target in FIELD_ALIASES.items():
        out.append((alias, target if isinstance(target, str) else "複数の項目から"))
    out.append(("署名", "signature"))
    out.append((UNSUBSCRIBE_TOKEN_FIELD, "配信停止リンクのトークン"))
    for name in CANONICAL_COLUMNS:
        out.append((name, COLUMN_LABELS.get(name, name)))
    canonical = set(CANONICAL_COLUMNS)
    for col in columns:
        name = str(col)
        if name not in canonical and name.isidentifier():
            out.append((name, "カスタム項目"))
    return list(dict.fromkeys(out))


def check_fields(compiled: CompiledTemplate, columns: Iterable[str]) -> None:
    """Refuse a field that exists for no member at all, naming the near ones.

    Without this, ``{{ 会社 }}`` (for ``{{ 会社名 }}``) failed at the first member as "会員 1012
    の「会社」が空欄か…", blaming the member for the template's typo. Checked once per
    campaign against the member columns, before any member is rendered.
    """
    known = {name for name, _ in merge_fields(columns)}
    known |= COMPOSER_FIELDS | {"member"} | set(compiled.env.globals)
    known |= {str(c) for c in columns}
    unknown = sorted(
        (n for n in compiled.names if n not in known),
        key=lambda n: compiled.field_lines.get(n, 0),
    )
    if not unknown:
        return
    field = unknown[0]
    line = compiled.field_lines.get(field)
    candidates = [name for name, _ in merge_fields(columns)]
    near = difflib.get_close_matches(field, candidates, n=5, cutoff=0.5)
    hint_ja = f"近い項目: {'、'.join(near)}。" if near else ""
    hint = f"; did you mean {', '.join(near)}?" if near else ""
    raise TemplateError(
        f"{compiled.where(line)}: unknown field {field!r} (no such member column or alias){hint}",
        ja=f"{compiled.where_ja(line)}: 「{field}」という差し込み項目はありません。{hint_ja}"
        "差し込み項目の一覧から選んでください。",
    )


def field_label(name: str) -> str:
    """``会社名`` → ``会社名 (comp_name)`` for messages; canonical names stay as they are."""
    alias = FIELD_ALIASES.get(name)
    return f"{name} ({alias})" if isinstance(alias, str) else name


# --- the file format -----------------------------------------------------------------------


def _toml_string(value: str) -> str:
    out = ['"']
    for ch in value:
        if ch in '"\\':
            out.append("\\" + ch)
        elif ord(ch) < 0x20 or ch == "\x7f":
            out.append(f"\\u{ord(ch):04x}")
        else:
            out.append(ch)
    out.append('"')
    return "".join(out)


def render_template_file(template: Template) -> str:
    """The file text for ``template``; :func:`parse_template_file` reads it back exactly."""
    html = "true" if template.html else "false"
    return f"{_FRONT}\nsubject = {_toml_string(template.subject)}\nhtml = {html}\n{_FRONT}\n" + (
        template.body
    )


def parse_template_file(text: str, name: str, where: str) -> Template:
    """Read the front matter and body; errors name the file and what is wrong with it."""
    text = text.removeprefix("\ufeff").replace("\r\n", "\n")
    lines = text.split("\n")
    if not lines or lines[0].strip() != _FRONT:
        raise TemplateError(
            f"{where}: must start with a '+++' line (the template header)",
            ja=f"テンプレート {where} は '+++' の行（ヘッダー）で始めてください。",
        )
    try:
        end = next(i for i in range(1, len(lines)) if lines[i].strip() == _FRONT)
    except StopIteration:
        raise TemplateError(
            f"{where}: the header has no closing '+++' line",
            ja=f"テンプレート {where} のヘッダーを閉じる '+++' の行がありません。",
        ) from None
    try:
        head = tomllib.loads("\n".join(lines[1:end]))
    except tomllib.TOMLDecodeError as err:
        raise TemplateError(
            f"{where}: header is not valid TOML: {err}",
            ja=f"テンプレート {where} のヘッダーが TOML として正しくありません。",
        ) from err
    unknown = sorted(set(head) - {"subject", "html"})
    if unknown:
        raise TemplateError(
            f"{where}: unknown header key {unknown[0]!r} (known: html, subject)",
            ja=f"テンプレート {where} のヘッダーに知らない項目 {unknown[0]!r} があります"
            "（subject と html だけ）。",
        )
    subject = head.get("subject")
    if not isinstance(subject, str):
        raise TemplateError(
            f"{where}: header key 'subject' (件名) is required and must be a string",
            ja=f"テンプレート {where} のヘッダーに件名（subject）を文字列で書いてください。",
        )
    html = head.get("html", False)
    if not isinstance(html, bool):
        raise TemplateError(
            f"{where}: header key 'html' must be true or false, not {html!r}",
            ja=f"テンプレート {where} のヘッダーの html は true か false にしてください。",
        )
    return Template(name=name, subject=subject, body="\n".join(lines[end + 1 :]), html=html)


def check_name(name: str) -> str:
    """A template name that is a safe file name on every OS; Japanese is welcome."""
    if not isinstance(name, str):
        raise TemplateError(
            f"template name must be a string, not {name!r}",
            ja="テンプレート名は文字列で指定してください。",
        )
    norm = unicodedata.normalize("NFC", name)
    problem = None
    if not norm.strip():
        problem = "is empty"
    elif len(norm) > _MAX_NAME:
        problem = f"is longer than {_MAX_NAME} characters"
    elif any(ch in _BAD_NAME_CHARS for ch in norm):
        bad = next(ch for ch in norm if ch in _BAD_NAME_CHARS)
        problem = f"contains {bad!r} (not allowed: {' '.join(sorted(_BAD_NAME_CHARS))})"
    elif any(unicodedata.category(ch) in ("Cc", "Cf", "Zl", "Zp") for ch in norm):
        problem = "contains a control character"
    elif norm[0] in ". " or norm[-1] in ". " or norm[0] == "\u3000" or norm[-1] == "\u3000":
        problem = "starts or ends with a dot or a space"
    elif norm.split(".")[0].upper() in _WINDOWS_RESERVED:
        problem = "is a reserved device name on Windows"
    if problem:
        raise TemplateError(
            f"template name {name!r} {problem}",
            ja=f"テンプレート名「{name}」は使えません（空、長すぎる、使えない文字など）。",
        )
    return norm


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
            raise TemplateError(
                f"template {name!r} not found in {self.folder} (have: {', '.join(self.list())})",
                ja=f"テンプレート「{name}」が {self.folder} にありません。",
            ) from None
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

    @staticmethod
    def _write(path: Path, text: str) -> None:
        write_atomically(path, text, mode=0o600)


def check_renders(template: Template, member: Mapping[str, Any]) -> None:
    """Render subject and body for ``member``; raise the first TemplateError.

    An HTML body, as rendered, is also held to the composer's depth limit
    (:mod:`bcartnb.htmldepth`): a template too deep for css-inline is not stored. (The source
    itself is not measured: both branches of an ``{% if %}`` would count.)
    """
    member_id = member.get("id")
    for part, source, html in (
        ("subject", template.subject, False),
        ("body", template.body, template.html),
    ):
        compiled = compile_template(source, template.name, part, html)
        check_fields(compiled, member.keys())  # a typo is the template's, not the member's
        context = context_builder(compiled.names)(member)
        context.update(dict.fromkeys(SIGNATURE_FIELDS & compiled.names, "署名"))
        if UNSUBSCRIBE_TOKEN_FIELD in compiled.names:
            context[UNSUBSCRIBE_TOKEN_FIELD] = "sample-token"
        rendered = compiled.render(context, member_id)
        if html:
            htmldepth.check_depth(rendered, compiled.where(None), compiled.where_ja(None))
