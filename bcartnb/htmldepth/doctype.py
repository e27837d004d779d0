"""Quirks mode: whether the parser reads an HTML mail as an old browser would.

No doctype, a malformed one or one of the old ones the standard lists puts a parser in
quirks mode, and in quirks mode a ``<table>`` does not close an open ``<p>``: one level more
or less on every table, which the depth model must know before the first tag.
"""

from __future__ import annotations

import re

from bcartnb.htmldepth.tokens import WS

__all__ = ["quirks"]


# Quirks mode (no doctype, or an old one) decides whether a <table> closes an open <p>; the
# doctype's public and system identifiers as the standard's initial insertion mode reads them
_DOCTYPE_RE = re.compile(
    rf"<!doctype(?:[{WS}]+([^{WS}>]+))?[{WS}]*"
    rf"(?:public[{WS}]*(?:\"([^\"]*)\"|'([^']*)')[{WS}]*(?:\"([^\"]*)\"|'([^']*)')?"
    rf"|system[{WS}]*(?:\"([^\"]*)\"|'([^']*)'))?[{WS}]*>",
    re.IGNORECASE,
)
_BEFORE_DOCTYPE_RE = re.compile(rf"(?:[{WS}\ufeff]++|<!--.*?-->|<\?[^>]*+>)*+", re.DOTALL)
_QUIRKS_IDS = (
    "html",
    "-//w3o//dtd w3 html strict 3.0//en//",
    "-/w3c/dtd html 4.0 transitional/en",
)
_QUIRKS_PREFIXES = (
    "+//silmaril//dtd html pro v0r11 19970101//",
    "-//advasoft ltd//dtd html 3.0 aswedit + extensions//",
    "-//as//dtd html 3.0 aswedit + extensions//",
    "-//ietf//dtd html 2.0 level 1//",
    "-//ietf//dtd html 2.0 level 2//",
    "-//ietf//dtd html 2.0 strict level 1//",
    "-//ietf//dtd html 2.0 strict level 2//",
    "-//ietf//dtd html 2.0 strict//",
    "-//ietf//dtd html 2.0//",
    "-//ietf//dtd html 2.1e//",
    "-//ietf//dtd html 3.0//",
    "-//ietf//dtd html 3.2 final//",
    "-//ietf//dtd html 3.2//",
    "-//ietf//dtd html 3//",
    "-//ietf//dtd html level 0//",
    "-//ietf//dtd html level 1//",
    "-//ietf//dtd html level 2//",
    "-//ietf//dtd html level 3//",
    "-//ietf//dtd html strict level 0//",
    "-//ietf//dtd html strict level 1//",
    "-//ietf//dtd html strict level 2//",
    "-//ietf//dtd html strict level 3//",
    "-//ietf//dtd html strict//",
    "-//ietf//dtd html//",
    "-//metrius//dtd metrius presentational//",
    "-//microsoft//dtd internet explorer 2.0 html strict//",
    "-//microsoft//dtd internet explorer 2.0 html//",
    "-//microsoft//dtd internet explorer 2.0 tables//",
    "-//microsoft//dtd internet explorer 3.0 html strict//",
    "-//microsoft//dtd internet explorer 3.0 html//",
    "-//microsoft//dtd internet explorer 3.0 tables//",
    "-//netscape comm. corp.//dtd html//",
    "-//netscape comm. corp.//dtd strict html//",
    "-//o'reilly and associates//dtd html 2.0//",
    "-//o'reilly and associates//dtd html extended 1.0//",
    "-//o'reilly and associates//dtd html extended relaxed 1.0//",
    "-//softquad software//dtd hotmetal pro 6.0::19990601::extensions to html 4.0//",
    "-//softquad//dtd hotmetal pro 4.0::19971010::extensions to html 4.0//",
    "-//spyglass//dtd html 2.0 extended//",
    "-//sq//dtd html 2.0 hotmetal + extensions//",
    "-//sun microsystems corp.//dtd hotjava html//",
    "-//sun microsystems corp.//dtd hotjava strict html//",
    "-//w3c//dtd html 3 1995-03-24//",
    "-//w3c//dtd html 3.2 draft//",
    "-//w3c//dtd html 3.2 final//",
    "-//w3c//dtd html 3.2//",
    "-//w3c//dtd html 3.2s draft//",
    "-//w3c//dtd html 4.0 frameset//",
    "-//w3c//dtd html 4.0 transitional//",
    "-//w3c//dtd html experimental 19960712//",
    "-//w3c//dtd html experimental 970421//",
    "-//w3c//dtd w3 html//",
    "-//w3o//dtd w3 html 3.0//",
    "-//webtechs//dtd mozilla html 2.0//",
    "-//webtechs//dtd mozilla html//",
)


def quirks(html: str) -> bool:
    """Whether a parser reads ``html`` in quirks mode: no doctype first, a malformed one, or
    one of the old ones the standard lists."""
    start = _BEFORE_DOCTYPE_RE.match(html)
    found = _DOCTYPE_RE.match(html, start.end() if start else 0)
    if found is None or (found.group(1) or "").lower() != "html":
        return True
    public = next((g for g in found.group(2, 3) if g is not None), None)
    system = next((g for g in found.group(4, 5, 6, 7) if g is not None), None)
    public = (public or "").lower()
    return (
        public.startswith(_QUIRKS_PREFIXES)
        or public in _QUIRKS_IDS
        or (
            system is None
            and public.startswith(
                ("-//w3c//dtd html 4.01 frameset//", "-//w3c//dtd html 4.01 transitional//")
            )
        )
        or (system or "").lower() == "http://www.ibm.com/data/dtd/v11/ibmxhtml1-transitional.dtd"
    )
