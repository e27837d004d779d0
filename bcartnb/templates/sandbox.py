"""The one Jinja2 environment templates render in: sandboxed, strict, and bounded.

A template is the shop's text, but it runs on the marketer's machine against 10,000 members:
Jinja's sandbox stops attribute tricks (``{{ ''.__class__ }}``), StrictUndefined makes an empty
field an error rather than a blank in a sent mail, and the two limits here end a runaway loop
or a huge value before the kernel or the spool gives up.

Templates are bounded, per render, by the settings ``render_timeout`` (seconds) and
``max_mail_bytes``: the sandbox checks its clock on every call, attribute and loop step,
and refuses any value larger than a whole mail may be (``'a' * 10**8``) or an
integer power too big to print (``(10**100000)**100000``) before computing it. Both are
TemplateErrors naming template, line and member, so a dry run ends instead of hanging.
"""

from __future__ import annotations

import functools
import re
import string
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import jinja2
from jinja2 import nodes
from jinja2.runtime import Context
from jinja2.sandbox import SandboxedEnvironment

from bcartnb.settings import MAX_MAIL_BYTES, RENDER_TIMEOUT

__all__ = ["LimitedSandbox", "Overrun", "guard_loops", "make_environment"]


class Overrun(Exception):
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

    #: Jinja's join of output pieces; :func:`guard_loops` may swap in :meth:`counted_concat`.
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
            raise Overrun(
                f"rendering took longer than render_timeout ({self.timeout:g} s)",
                f"作成が制限時間（{self.timeout:g}秒）を超えました。ループや計算を見直してください",
            )

    def refuse_size(self, size: int, what: str) -> None:
        if size > self.max_size:
            raise Overrun(
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
                raise Overrun(
                    f"the power {left if _int_bits(left) < 64 else 'n'}**{right} is too large",
                    "累乗の結果が大きすぎます",
                )
        elif operator == "*":
            if isinstance(left, int) and isinstance(right, int):
                if _int_bits(left) + _int_bits(right) > _MAX_INT_BITS:
                    raise Overrun("the product is too large", "掛け算の結果が大きすぎます")
            elif isinstance(left, _SIZED) and isinstance(right, int):
                self.refuse_size(len(left) * right, "a repeated value")
            elif isinstance(right, _SIZED) and isinstance(left, int):
                self.refuse_size(len(right) * left, "a repeated value")
        elif operator == "+" and isinstance(left, _SIZED) and isinstance(right, _SIZED):
            self.refuse_size(len(left) + len(right), "a joined value")
        elif operator == "%" and isinstance(left, str) and _wide_format(left, percent=True):
            raise Overrun("a format width is too large", "書式の幅が大きすぎます")
        return self.checked(super().call_binop(context, operator, left, right))

    def counted_concat(self, pieces: Iterable[str]) -> str:
        """Jinja's join of the output (and of macros and set blocks), sized before joining.

        Only for templates with loops or macros (:func:`guard_loops` installs it): without
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
            raise Overrun("a format width is too large", "書式の幅が大きすぎます")
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
                raise Overrun("a format width is too large", "書式の幅が大きすぎます")
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


def guard_loops(ast: nodes.Template, env: LimitedSandbox) -> None:
    """Make every ``{% for %}`` iterate through the sandbox's clock (the bcnb_loop filter),
    and count the output of a template that can repeat it."""
    for loop in ast.find_all(nodes.For):
        loop.iter = nodes.Filter(loop.iter, "bcnb_loop", [], [], None, None, lineno=loop.lineno)
    if ast.find(nodes.For) or ast.find(nodes.Macro) or ast.find(nodes.CallBlock):
        env.concat = env.counted_concat  # read when the code is loaded: before from_code
