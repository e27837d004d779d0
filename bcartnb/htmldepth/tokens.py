"""The tokenizer's part of the measure: where each tag, comment and raw text starts and ends.

The HTML standard splits a document into tags with their quoted attributes, comments, CDATA,
bogus comments and the raw text of ``<script>``, ``<style>``, ``<textarea>``…; a regular
expression with possessive quantifiers reads that grammar as the standard does, in linear
time, so no input makes the scan slow.
"""

from __future__ import annotations

import re

__all__ = ["TOKEN_RE", "WS", "self_closing", "skip_other", "skip_raw_text"]

WS = "\t\n\f\r "
_ATTR = (
    rf"[^{WS}/>][^{WS}/>=]*+"
    rf"(?:[{WS}]*+=[{WS}]*+(?:\"[^\"]*+\"|'[^']*+'|[^{WS}>\"'][^{WS}>]*+|(?=>))|(?![{WS}]*+=))"
)
# The next token: a whole tag as the tokenizer reads it (1: "/" for an end tag, 2: its name,
# 3: its attributes), else (4) a comment, CDATA, a bogus comment or a "</" that starts no
# tag, else a tag that runs to the end of the input (the tokenizer drops it). The grammar is
# deterministic, so possessive quantifiers read it as the standard does, in linear time; a
# "<" that matches none of these is text.
_TAG = rf"<(/?)([A-Za-z][^{WS}/>]*+)((?:[{WS}/]++|{_ATTR})*+)>"
TOKEN_RE = re.compile(rf"{_TAG}|<(!--|!\[CDATA\[|[!?/])|<[A-Za-z]")
_TAG_RE = re.compile(_TAG)
_ATTR_TOKENS_RE = re.compile(rf"[{WS}/]++|{_ATTR}")
_COMMENT_END_RE = re.compile(r"--!?>")


def self_closing(attrs: str) -> bool:
    """Whether a tag ends in ``/>`` (which only SVG and MathML elements obey): the slash must
    stand alone, not end an unquoted value (``<g a=b/>`` is not self-closing)."""
    if not attrs.endswith("/"):
        return False
    tokens = [m.group() for m in _ATTR_TOKENS_RE.finditer(attrs)]
    return bool(tokens) and tokens[-1][0] in WS + "/"


def skip_raw_text(html: str, token: re.Match[str], raw: str) -> int:
    """Past the text of a raw-text element and its end tag."""
    if raw == "plaintext":  # the rest is text
        return len(html)
    stop = re.compile(rf"</{raw}(?=[{WS}/>])", re.IGNORECASE).search(html, token.end())
    if stop is None:
        return len(html)
    close = _TAG_RE.match(html, stop.start())
    return len(html) if close is None else close.end()


def skip_other(html: str, token: re.Match[str]) -> int:
    """Past a comment, CDATA, a bogus comment or a tag that never ends."""
    kind, lt = token.group(4), token.start()
    if kind is None:
        return len(html)  # a tag that never ends
    if kind == "!--":
        if html.startswith((">", "->"), lt + 4):
            return html.index(">", lt + 4) + 1
        found = _COMMENT_END_RE.search(html, lt + 4)
        return len(html) if found is None else found.end()
    # CDATA (in SVG to "]]>", elsewhere a bogus comment to ">"): to the first ">" either way,
    # which never skips a tag the parser reads
    if html.startswith("</>", lt):
        return lt + 3
    end = html.find(">", lt + 2)
    return len(html) if end < 0 else end + 1
