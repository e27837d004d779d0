"""The parser's two lists, modelled: the stack of open elements and the active formatting ones.

Every position is kept in lists by name and by kind (scope boundary, special…), so each
question the tree builder asks ("is a ``<p>`` in button scope?") compares two ints and a tag
costs a bounded number of steps. Opening an element past the limit, or more elements than
the input can account for, raises :class:`Over`.
"""

from __future__ import annotations

import bisect

from bcartnb.htmldepth.elements import FLAGS, FOREIGN_BOUNDARY, HTML

__all__ = ["Model", "Over"]


class _Entry:
    """An unclosed formatting element the parser will reopen (identity matters)."""

    __slots__ = ("alike", "at", "name", "named")

    def __init__(self, name: str, at: int, alike: list[_Entry], named: list[_Entry]) -> None:
        self.name, self.at, self.alike, self.named = name, at, alike, named


class Over(Exception):
    def __init__(self, reason: str) -> None:
        self.reason = reason
        self.offset = 0


class Model:
    """The stack of open elements and the list of active formatting elements, kept as
    positions, so that every question ("is a ``<p>`` in button scope?") compares two ints."""

    def __init__(self, limit: int, budget: int) -> None:
        self.limit, self.budget = limit, budget
        # each open element: name ("1:g" for SVG), namespace, flags, integration point, and
        # the position of the nearest HTML element at or below it
        self.stack: list[tuple[str, int, tuple[str, ...], bool, int]] = []
        self.at: dict[str, list[int]] = {}
        self.flagged: dict[str, list[int]] = {f: [] for f in ("scope", "table", "special")}
        self.flagged.update(li_stop=[], dd_stop=[])
        self.formatting: list[_Entry | None] = []  # None: a marker
        # per marker: entries by name and attributes (Noah's ark), and by name
        self.alike: list[dict[str, list[_Entry]]] = [{}]
        self.named: list[dict[str, list[_Entry]]] = [{}]
        self.of_element: dict[int, _Entry] = {}
        self.form_open = False  # the parser's form element pointer is set
        self.form_at = -1  # where the form it points at is on the stack, if it still is
        self.quirks = True
        # what each open template's first element made it: a body, a table, rows, cells, columns
        self.template_modes: dict[int, str] = {}
        self.framesets = 0  # open in the reading where the frameset is the body
        self.framesets_seen = False
        self.deepest = 0
        self.push("html")
        self.push("body")

    # -- the stack --

    def last(self, name: str) -> int:
        found = self.at.get(name)
        return found[-1] if found else -1

    def last_flag(self, flag: str) -> int:
        found = self.flagged[flag]
        return found[-1] if found else -1

    def push(self, name: str, ns: int = HTML, point: bool = False) -> None:
        index = len(self.stack)
        if index >= self.limit:
            raise Over("depth")
        self.budget -= 1
        if self.budget < 0:
            raise Over("elements")
        if ns == HTML:
            flags = FLAGS.get(name, ())
            below_html = index
        else:
            flags = FOREIGN_BOUNDARY if point or name == "annotation-xml" else ()
            name = f"{ns}:{name}"
            below_html = self.stack[-1][4]
        self.stack.append((name, ns, flags, point, below_html))
        found = self.at.get(name)
        if found is None:
            self.at[name] = [index]
        else:
            found.append(index)
        for flag in flags:
            self.flagged[flag].append(index)
        if index >= self.deepest:
            self.deepest = index + 1

    def frameset(self, name: str) -> None:
        """A parser that takes a frameset for the body (if nothing before it rules that out)
        drops the body and reads nothing but framesets from there: counted apart, every
        ``<frameset>`` in, every ``</frameset>`` out, the depth the larger of the two ways."""
        self.framesets_seen = self.framesets_seen or name == "frameset"
        self.framesets += name == "frameset"
        levels = 1 + self.framesets + (name != "frameset")  # html, framesets, a frame
        if levels > self.limit:
            raise Over("depth")
        self.deepest = max(self.deepest, levels)

    def leaf(self) -> None:
        """An element with nothing inside (``<br>``, ``<script>``): one level, never open."""
        if len(self.stack) >= self.limit:
            raise Over("depth")
        self.deepest = max(self.deepest, len(self.stack) + 1)

    def pop(self) -> None:
        name, _, flags, _, _ = self.stack.pop()
        if len(self.stack) == self.form_at:
            self.form_at = -1
        if name == "template":
            self.template_modes.pop(len(self.stack), None)
        self.at[name].pop()
        for flag in flags:
            self.flagged[flag].pop()
        if self.of_element:
            entry = self.of_element.pop(len(self.stack), None)
            if entry is not None:
                entry.at = -1

    def pop_to(self, index: int) -> None:
        """Pop until the element at ``index`` is popped (never ``<html>``)."""
        while len(self.stack) > max(index, 1):
            self.pop()

    def in_scope(self, name: str, *also: str) -> int:
        """The element's position if it is in scope (``also``: more boundaries), else -1."""
        index = self.last(name)
        if index < 0:
            return -1
        bound = self.last_flag("scope")
        for more in also:
            bound = max(bound, self.last(more))
        return index if index >= bound else -1  # itself a boundary (<applet>) is in scope

    def close_p(self) -> None:
        if self.at.get("p"):
            index = self.in_scope("p", "button")
            if index >= 0:
                self.pop_to(index)

    # -- the list of active formatting elements --

    def marker(self) -> None:
        self.formatting.append(None)
        self.alike.append({})
        self.named.append({})

    def clear_to_marker(self) -> None:
        while self.formatting:
            entry = self.formatting.pop()
            if entry is None:
                self.alike.pop()
                self.named.pop()
                return
            self.of_element.pop(entry.at, None)
        self.alike[0].clear()
        self.named[0].clear()

    def remember(self, name: str, attrs: str) -> None:
        """Add the element just pushed; a fourth alike one pushes out the earliest (Noah's ark:
        alike is the same name and attributes, spelled the same: never fewer than the parser's)."""
        alike = self.alike[-1].setdefault(name + attrs, [])
        if len(alike) >= 3:
            self.forget(alike[0])
        entry = _Entry(name, len(self.stack) - 1, alike, self.named[-1].setdefault(name, []))
        alike.append(entry)
        entry.named.append(entry)
        self.formatting.append(entry)
        self.of_element[entry.at] = entry

    def forget(self, entry: _Entry) -> None:
        self.formatting.remove(entry)
        entry.alike.remove(entry)
        entry.named.remove(entry)
        if entry.at >= 0:
            self.of_element.pop(entry.at, None)

    def latest(self, name: str) -> _Entry | None:
        """The last formatting element of this name since the last marker."""
        found = self.named[-1].get(name)
        return found[-1] if found else None

    def reopen(self) -> None:
        """Reconstruct the active formatting elements: each one closed since is opened again."""
        formatting = self.formatting
        start = len(formatting)
        while start > 0:
            entry = formatting[start - 1]
            if entry is None or entry.at >= 0:
                break
            start -= 1
        for entry in formatting[start:]:
            assert entry is not None
            self.push(entry.name)
            entry.at = len(self.stack) - 1
            self.of_element[entry.at] = entry

    def formatting_end(self, name: str) -> bool:
        """The adoption agency; False: treat as any other end tag.

        With blocks opened inside the element (``<font><p>…</font>``) the parser moves it
        inside them and, within its eight rounds, closes it there: the element leaves the
        stack, what was opened inside it stays (the parser may take out more: never fewer
        levels are kept). With more blocks than rounds a copy stays: nothing is taken out.
        """
        entry = self.latest(name)
        if entry is None:
            return False
        if entry.at < 0:
            self.forget(entry)
        elif entry.at > self.last_flag("scope"):
            at, specials = entry.at, self.flagged["special"]
            above = len(specials) - bisect.bisect_right(specials, at)
            if above <= 7:
                self.forget(entry)
                if above:
                    self.remove(at)
                else:
                    self.pop_to(at)
        return True

    def remove(self, index: int) -> None:
        """Take the element at ``index`` out of the stack; the ones above move down a place.

        Rebuilding the positions costs the depth, charged to the budget like opening one.
        """
        self.budget -= len(self.stack)
        if self.budget < 0:
            raise Over("elements")
        stack = self.stack
        del stack[index]
        self.at, self.flagged = {}, {flag: [] for flag in self.flagged}
        for i, (name, ns, flags, point, below_html) in enumerate(stack):
            self.at.setdefault(name, []).append(i)
            for flag in flags:
                self.flagged[flag].append(i)
            if i >= index:
                below_html = i if ns == HTML else stack[i - 1][4]
                stack[i] = (name, ns, flags, point, below_html)
        moved = {}
        for at, entry in self.of_element.items():
            entry.at = at - 1 if at > index else at
            moved[entry.at] = entry
        self.of_element = moved
        self.form_at -= self.form_at > index
        self.template_modes = {
            i - (i > index): mode for i, mode in self.template_modes.items() if i != index
        }
