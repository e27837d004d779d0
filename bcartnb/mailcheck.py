"""送信前の確認: what a mail's recipients, their mail clients and the law will hold against it.

A pure module: a composed mail (or its subject, text part and HTML part) in, a list of
:class:`Finding` out, each with a stable ``code``, a Japanese ``message`` for the shop's
staff and the exact ``detail`` (which link, which image, how many bytes, which part). The
conductor checks a campaign's representative mail, the preview each mail it shows; neither
refuses a send over a finding. Every check here is a heuristic over free text (an address
written as 「本社:千代田区…」 or a 受信拒否 route described in words may be missed, and a
member's value can satisfy a check by chance), so a finding asks a person to look; it never
decides for them. What refuses a send (a missing field, an unencodable character, an
oversized mail) is the composer's, where the rule is exact.

The checks, in the order they are reported (:data:`CODES`):

* ``html_size``: Gmail clips an HTML mail whose HTML is over 102 KB and shows the rest
  only behind a 「メッセージ全体を表示」 link (and its open-tracking pixel with it). What
  Gmail counts is not documented; the measurements public so far (Email on Acid, Litmus,
  hteumeuleu/email-bugs#41) agree it is the HTML part's code (tags, inline CSS, URLs,
  white space; external images not included), near 102 × 1024 bytes, and a little higher
  in some tests. We count that part as it is carried, decoded: its bytes in the mail's
  charset with CRLF line ends; over 104,448 bytes is a finding.
* ``img_alt``: an image with no alt text (absent or blank) shows nothing to a recipient
  whose client blocks images, as many do by default; 1×1 pixels and spacers are left alone.
* ``link_text_mismatch``: a link whose text is a URL (or a mail address) other than its
  target, the classic phishing sign that spam filters punish.
* ``link_scheme``: a ``javascript:``, ``vbscript:``, ``data:`` or ``file:`` link, which
  mail clients strip and filters score as hostile: an ``href`` or ``xlink:href`` on any
  element (an SVG or MathML link too), or an SVG ``<animate>``/``<set>`` that writes one.
* Active content, which mail clients remove and spam filters score as hostile, each named
  with its element and, where the source shows it unambiguously, its line:
  ``script`` (``<script>``, in SVG too), ``event_handler`` (any ``on…`` attribute),
  ``meta_refresh`` (``<meta http-equiv="refresh">``), ``base`` (``<base>``), ``form``
  (``<form>``), ``embed`` (``<iframe>``, ``<frame>``, ``<object>``, ``<embed>``,
  ``<applet>``) and ``css_remote`` (CSS that loads from another host: ``url()`` in
  ``<style>`` or a ``style`` attribute, ``@import``, ``<link rel="stylesheet">``).
* 特定電子メール法 第4条 and its 施行規則 第9条, named as the law's guidance names them,
  looked for in **each** part a recipient may read (the text part and the HTML part):
  ``sender_name`` 送信者の氏名又は名称 (the settings' ``from`` display name);
  ``opt_out`` 受信拒否の通知先 (a URL, a mail address, a ``mailto:`` link or a reply)
  with 受信拒否ができる旨 next to it (within two lines: the guidance asks for 直前又は直後);
  ``sender_address`` 送信者の住所 (a 〒 postal code, or a prefecture and municipality);
  ``contact`` 苦情・問合せ等の受付先 (a telephone number, a mail address, or a URL beside
  お問い合わせ/連絡先).
* ``subject_empty`` and ``leftover_markup`` (a ``{{``/``{%`` left in the sent text).

The HTML is parsed once, by an HTML5 parser (Lexbor, through selectolax), so it is read as the
recipient's client reads it: entities in attributes decoded (``&#x68;ttp`` is ``http``,
``&#106;avascript:`` is ``javascript:``), CSS escapes decoded (``u\\72l(`` is ``url(``),
a scheme read past case, white space, controls and invisible characters (``JaVa&#9;ScRiPt:``
is ``javascript:``, as lenient clients read it),
tags in any case, a link nested in a link closed as browsers close it, ``<script>``,
``<style>``, ``<head>`` and elements hidden by ``display:none`` / ``visibility:hidden`` /
``hidden`` not counted as shown text. Whatever the input (unclosed tags, NUL, megabytes),
checking never raises.
"""

from __future__ import annotations

import bisect
import re
import unicodedata
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Protocol
from urllib.parse import SplitResult, urlsplit

from selectolax.lexbor import LexborHTMLParser, LexborNode

__all__ = [
    "CODES",
    "GMAIL_CLIP_BYTES",
    "HEADING",
    "Finding",
    "MailParts",
    "check_mail",
    "check_parts",
    "format_findings",
    "html_size",
]

GMAIL_CLIP_BYTES = 102 * 1024
#: every finding's code, in the order findings are reported
CODES = (
    "subject_empty",
    "leftover_markup",
    "sender_name",
    "opt_out",
    "sender_address",
    "contact",
    "html_size",
    "img_alt",
    "link_text_mismatch",
    "link_scheme",
    "script",
    "event_handler",
    "meta_refresh",
    "base",
    "form",
    "embed",
    "css_remote",
)
HEADING = "送信前の確認"
_DETAIL_MAX = 160


@dataclass(frozen=True)
class Finding:
    """One thing to look at before sending; a warning, never a refusal."""

    code: str
    message: str
    detail: str

    def as_dict(self) -> dict[str, str]:
        """The JSON summary's ``checks`` entry."""
        return {"code": self.code, "message": self.message, "detail": self.detail}

    def __str__(self) -> str:
        return f"{self.message} — {self.detail}"


class MailParts(Protocol):
    """What is checked of a mail: :class:`bcartnb.compose.ComposedMail` has it."""

    @property
    def subject(self) -> str: ...

    @property
    def text(self) -> str: ...

    @property
    def html(self) -> str | None: ...


def check_mail(mail: MailParts, *, sender_name: str, charset: str = "utf-8") -> list[Finding]:
    """Every check on a composed mail, as it will be sent (signature included)."""
    return check_parts(mail.subject, mail.text, mail.html, sender_name=sender_name, charset=charset)


def check_parts(
    subject: str,
    text: str,
    html: str | None,
    *,
    sender_name: str,
    charset: str = "utf-8",
) -> list[Finding]:
    """Every check on a mail's parts; ``html`` None is a text-only mail.

    ``sender_name`` is the name the mail must show (the settings' ``from`` display name);
    ``charset`` the mail's (``utf-8`` or ``iso-2022-jp``), in which the HTML is measured.
    """
    parts: list[_Part] = [_text_part(text)]
    tree = None
    if html is not None:
        tree = LexborHTMLParser(html)
        parts.append(_html_part(tree))
    found: list[Finding] = []
    if not subject.strip():
        found.append(Finding("subject_empty", "件名が空です。", "件名"))
    found += _leftovers(subject, text, html)
    found += _legal(parts, sender_name)
    if html is not None and tree is not None:
        size = html_size(html, charset)
        if size > GMAIL_CLIP_BYTES:
            found.append(
                Finding(
                    "html_size",
                    "HTMLが102KBを超えています。Gmailではメールが途中で切れ、続きは"
                    "「メッセージ全体を表示」を押さないと読めません。",
                    f"HTMLパート {size:,} バイト（上限 {GMAIL_CLIP_BYTES:,} バイト = 102KB）",
                )
            )
        found += _images(tree)
        found += _links(tree)
        found += _active(tree, html)
    found.sort(key=lambda f: CODES.index(f.code))  # stable: a part's findings keep their order
    return found


def html_size(html: str, charset: str = "utf-8") -> int:
    """The HTML part's bytes as carried (decoded): in ``charset``, CRLF line ends."""
    wire = html.replace("\r\n", "\n").replace("\r", "\n").replace("\n", "\r\n")
    try:
        return len(wire.encode(charset, errors="replace"))
    except LookupError:
        return len(wire.encode("utf-8", errors="replace"))


def format_findings(findings: Sequence[Finding], heading: str = HEADING) -> list[str]:
    """The lines the command line prints: the heading, then one line a finding."""
    if not findings:
        return []
    return [f"{heading}:"] + [f"  ・{f}" for f in findings]


# --- parts: the text a recipient reads, line by line, with the links on each line --------


@dataclass(frozen=True)
class _Part:
    name: str
    lines: tuple[str, ...]  # visible text, NFKC, one entry a non-blank line
    targets: tuple[tuple[str, ...], ...]  # link targets (href) on each line


def _clean(value: str) -> str:
    return unicodedata.normalize("NFKC", value.replace("\x00", ""))


def _text_part(text: str) -> _Part:
    lines = [_clean(line).strip() for line in text.replace("\r", "\n").split("\n")]
    kept = tuple(line for line in lines if line)
    return _Part("テキストパート", kept, tuple(() for _ in kept))


_BLOCKS = frozenset(
    {
        *("address", "article", "aside", "blockquote", "body", "br", "center", "dd", "details"),
        *("div", "dl", "dt", "fieldset", "figcaption", "figure", "footer", "form", "header"),
        *("h1", "h2", "h3", "h4", "h5", "h6", "hr", "html", "li", "main", "nav", "ol", "p"),
        *("pre", "section", "summary", "table", "tbody", "tfoot", "thead", "tr", "ul"),
    }
)
_CELLS = frozenset({"td", "th"})
_UNSHOWN = frozenset({"head", "script", "style", "template", "noscript", "title", "-comment"})
_HIDDEN_STYLE_RE = re.compile(
    r"display\s*:\s*none|visibility\s*:\s*hidden|mso-hide\s*:\s*all", re.IGNORECASE
)
_SPACE_RE = re.compile(r"\s+")


def _hidden(node: LexborNode) -> bool:
    if node.tag in _UNSHOWN:
        return True
    attrs = node.attributes
    if "hidden" in attrs:
        return True
    style = attrs.get("style")
    return bool(style and _HIDDEN_STYLE_RE.search(style))


def _walk(root: LexborNode) -> Iterator[tuple[str, LexborNode]]:
    """("open" | "close" | "text", node) in document order, hidden subtrees skipped.

    An explicit stack, not recursion: a mail may nest elements thousands deep.
    """
    stack: list[tuple[bool, LexborNode]] = [(False, root)]
    while stack:
        closing, node = stack.pop()
        if closing:
            yield "close", node
            continue
        if node.is_text_node:
            yield "text", node
            continue
        if not node.is_element_node and not node.is_document_node:
            continue
        if node.is_element_node and _hidden(node):
            continue
        yield "open", node
        stack.append((True, node))
        children = list(node.iter(include_text=True))
        stack.extend((False, child) for child in reversed(children))


def _html_part(tree: LexborHTMLParser) -> _Part:
    lines: list[str] = []
    targets: list[list[str]] = []
    current: list[str] = []
    current_targets: list[str] = []

    def newline() -> None:
        line = _SPACE_RE.sub(" ", _clean("".join(current))).strip()
        if line:
            lines.append(line)
            targets.append(list(current_targets))
        elif current_targets and targets:
            targets[-1] += current_targets
        current.clear()
        current_targets.clear()

    root = tree.root
    for event, node in _walk(root) if root is not None else ():
        if event == "text":
            current.append(node.text_content or "")
        elif node.tag in _BLOCKS:
            newline()
        elif node.tag in _CELLS:
            current.append(" ")
        if event == "open" and node.tag == "a":
            href = node.attributes.get("href")
            if href:
                current_targets.append(href)
    newline()
    return _Part("HTMLパート", tuple(lines), tuple(tuple(t) for t in targets))


# --- 特定電子メール法 ---------------------------------------------------------------------

_URL_RE = re.compile(r"https?://[^\s<>\"'（）「」、。]+", re.IGNORECASE)
# Every pattern searched in free text is linear, however long a line (a mail may hold a
# megabyte without a space): a match may only start where a run of its characters starts
# (the lookbehind), and possessive quantifiers never give back what they took.
_MAIL_RE = re.compile(
    r"(?<![A-Za-z0-9._%+\-])[A-Za-z0-9._%+\-]++@[A-Za-z0-9\-]++(?:\.[A-Za-z0-9\-]++)++"
)
_OPT_OUT_RE = re.compile(
    r"配信停止|配信の停止|配信を停止|配信解除|配信の解除|配信を解除|受信拒否|購読解除|購読の解除|"
    r"購読を解除|登録解除|登録の解除|メール停止|受け取らない|unsubscribe|opt-?out|オプトアウト",
    re.IGNORECASE,
)
# A way to send the 受信拒否 notice that is not a link: a reply, the member's page, a form.
_OPT_OUT_WAY_RE = re.compile(r"返信|マイページ|会員ページ|フォーム|手続")
_CONTACT_RE = re.compile(
    r"問い?合わ?せ|連絡先|窓口|苦情|お客様(?:センター|相談)|サポート|contact", re.IGNORECASE
)
_PHONE_RE = re.compile(
    r"(?<![\d-])(?:0\d{1,4}-\d{1,4}-\d{3,4}|0\d{1,4}\(\d{1,4}\)\d{3,4}|\(0\d{1,4}\)\d{1,4}-\d{3,4})"
    r"(?![\d-])|(?:TEL|電話|フリーダイヤル)\D{0,6}0\d{8,10}(?!\d)",
    re.IGNORECASE,
)
_PREFS = (
    "北海道|青森県|岩手県|宮城県|秋田県|山形県|福島県|茨城県|栃木県|群馬県|埼玉県|千葉県|東京都|"
    "神奈川県|新潟県|富山県|石川県|福井県|山梨県|長野県|岐阜県|静岡県|愛知県|三重県|滋賀県|京都府|"
    "大阪府|兵庫県|奈良県|和歌山県|鳥取県|島根県|岡山県|広島県|山口県|徳島県|香川県|愛媛県|高知県|"
    "福岡県|佐賀県|長崎県|熊本県|大分県|宮崎県|鹿児島県|沖縄県"
)
_DESIGNATED_CITIES = (
    "札幌|仙台|さいたま|千葉|川崎|横浜|相模原|新潟|静岡|浜松|名古屋|京都|大阪|堺|神戸|岡山|広島|"
    "北九州|福岡|熊本"
)
# 〒 and a postal code; or a prefecture followed by a municipality name (kanji, then 市区町村郡,
# so 「東京都への配送」 is not an address); or a designated city and its ward.
_ADDRESS_RE = re.compile(
    r"〒\s*\d{3}-?\d{4}|(?<![\d-])\d{3}-\d{4}(?![\d-])"
    rf"|(?:{_PREFS})\s*[一-龥々ヶケ]{{1,6}}?[市区町村郡]"
    rf"|(?:{_DESIGNATED_CITIES})市[一-龥々ヶケ]{{1,4}}区"
)
_WINDOW = 2  # lines before and after: the guidance's 直前又は直後


def _squash(text: str) -> str:
    return "".join(_clean(text).split())


def _near(part: _Part, index: int) -> Iterator[tuple[str, tuple[str, ...]]]:
    lo, hi = max(0, index - _WINDOW), min(len(part.lines), index + _WINDOW + 1)
    for j in range(lo, hi):
        yield part.lines[j], part.targets[j]


def _is_route(line: str, targets: Iterable[str]) -> bool:
    """A 受信拒否の通知先 on this line: a URL, a mail address, a link, or a stated way."""
    if _URL_RE.search(line) or _MAIL_RE.search(line) or _OPT_OUT_WAY_RE.search(line):
        return True
    return any(_link_kind(t) in ("web", "mailto") for t in targets)


def _has_opt_out(part: _Part) -> str | None:
    """None when the part has both; else what it lacks, in words."""
    stated = [i for i, line in enumerate(part.lines) if _OPT_OUT_RE.search(line)]
    if not stated:
        return "受信拒否（配信停止）ができる旨の記載がありません"
    for i in stated:
        if any(_is_route(line, targets) for line, targets in _near(part, i)):
            return None
    return "配信停止の記載の前後に、通知先（URL・メールアドレス・返信の方法）がありません"


def _has_contact(part: _Part) -> bool:
    for i, line in enumerate(part.lines):
        if _PHONE_RE.search(line) or _MAIL_RE.search(line):
            return True
        if any(_link_kind(t) == "mailto" for t in part.targets[i]):
            return True
        if _CONTACT_RE.search(line) and any(
            _URL_RE.search(near) or any(_link_kind(t) == "web" for t in targets)
            for near, targets in _near(part, i)
        ):
            return True
    return False


def _legal(parts: Sequence[_Part], sender_name: str) -> list[Finding]:
    law = "特定電子メール法"
    name = _squash(sender_name)
    missing_name = [p.name for p in parts if name and name not in _squash("".join(p.lines))]
    out: list[Finding] = []
    if not name:
        out.append(
            Finding(
                "sender_name",
                f"送信者の氏名又は名称を確かめられません（{law} 第4条第1号）。設定の from に"
                "送信者名を入れてください。",
                "設定 from の表示名が空です",
            )
        )
    elif missing_name:
        out.append(
            Finding(
                "sender_name",
                f"送信者の氏名又は名称が本文にありません（{law} 第4条第1号）。",
                f"{'、'.join(missing_name)}: 「{_show(sender_name)}」が見つかりません",
            )
        )
    no_address = [p.name for p in parts if not any(_ADDRESS_RE.search(line) for line in p.lines)]
    if no_address:
        out.append(
            Finding(
                "sender_address",
                f"送信者の住所が本文にありません（{law} 施行規則 第9条第2号）。",
                f"{'、'.join(no_address)}: 〒郵便番号、または都道府県と市区町村が見つかりません",
            )
        )
    no_contact = [p.name for p in parts if not _has_contact(p)]
    if no_contact:
        out.append(
            Finding(
                "contact",
                f"苦情・問合せ等の受付先が本文にありません（{law} 施行規則 第9条第3号）。"
                "電話番号、メールアドレスまたはURLを書いてください。",
                f"{'、'.join(no_contact)}: "
                "電話番号・メールアドレス・お問い合わせURLが見つかりません",
            )
        )
    opt_out = [(p.name, why) for p in parts if (why := _has_opt_out(p)) is not None]
    if opt_out:
        out.append(
            Finding(
                "opt_out",
                f"受信拒否の通知先と、受信拒否ができる旨が本文にありません（{law} 第4条第2号・"
                "施行規則 第9条第1号）。"
                "配信停止のURL・メールアドレスか、その方法を書いてください。",
                " / ".join(f"{name}: {why}" for name, why in opt_out),
            )
        )
    return out


# --- HTML: images and links -------------------------------------------------------------


def _attr(node: LexborNode, name: str) -> str | None:
    """The attribute's value; "" when present without one; None when absent."""
    attrs = node.attributes
    if name not in attrs:
        return None
    return attrs[name] or ""


def _images(tree: LexborHTMLParser) -> list[Finding]:
    out = []
    for img in tree.css("img"):
        alt = _attr(img, "alt")
        if alt is not None and alt.strip():
            continue
        if any(
            (_attr(img, dim) or "").strip() in ("0", "1", "0px", "1px")
            for dim in ("width", "height")
        ):
            continue  # a tracking pixel or a spacer: nothing to say
        src = _attr(img, "src") or ""
        why = "alt がありません" if alt is None else "alt が空です"
        out.append(
            Finding(
                "img_alt",
                "画像に代替テキスト（alt）がありません。画像を表示しない受信者には内容が伝わりません。",
                f"画像 {_show(src) or '(src なし)'}: {why}",
            )
        )
    return out


_URLISH_RE = re.compile(
    r"(?:[a-z][a-z0-9+.\-]*+://|www\.)\S+|[a-z0-9\-]++(?:\.[a-z0-9\-]++)*\.[a-z]{2,}(?:[/?#]\S*)?",
    re.IGNORECASE,
)
_MAILISH_RE = re.compile(r"(?:mailto:)?[^\s@]++@[^\s@.]++(?:\.[^\s@.]++)++", re.IGNORECASE)
_URL_JUNK_RE = re.compile(r"[\t\n\r]")
_SCRIPT_SCHEMES = frozenset({"javascript", "vbscript", "livescript", "mocha"})
_UNSAFE_SCHEMES = _SCRIPT_SCHEMES | {"data", "file"}
# What a lenient reader may skip inside a scheme: white space, controls (NUL is U+FFFD by
# then), soft hyphen, zero-width and direction marks, the BOM.
_SCHEME_NOISE_RE = re.compile(
    "[\\s\x00-\x1f\x7f-\x9f\u00ad\u180e\u200b-\u200f\u202a-\u202e\u2060-\u2064\ufeff\ufffd]+"
)
_SCHEME_RE = re.compile(r"[a-z][a-z0-9+.\-]*")
_COLON_RE = re.compile("[:\uff1a\ufe55]")  # and the full-width and small colons NFKC folds


def _scheme(value: str) -> str | None:
    """A URL's scheme as the most lenient mail client reads it: lower case, with white space,
    controls and invisible characters anywhere before the colon dropped (``JaVa\\tScRiPt:``,
    ``\\x01javascript:``, ``java\\u200bscript:`` are all ``javascript``); None when none.

    Stricter than a browser on purpose: a finding only asks a person to look.
    """
    colon = _COLON_RE.search(value)
    if colon is None:
        return None
    head = _SCHEME_NOISE_RE.sub("", unicodedata.normalize("NFKC", value[: colon.start()]))
    head = head.lower()
    return head if _SCHEME_RE.fullmatch(head) else None


def _href(value: str) -> str:
    """A URL as a browser reads an href: no tab or newline, no edge spaces or controls."""
    return _URL_JUNK_RE.sub("", value).strip(
        "\x00\x01\x02\x03\x04\x05\x06\x07\x08\x0b\x0c"
        "\x0e\x0f\x10\x11\x12\x13\x14\x15\x16\x17\x18"
        "\x19\x1a\x1b\x1c\x1d\x1e\x1f "
    )


def _link_kind(href: str) -> str:
    """ "web", "mailto", "unsafe" or "other" for an href."""
    if _scheme(href) in _UNSAFE_SCHEMES:
        return "unsafe"
    value = _href(href).lower()
    scheme, colon, _ = value.partition(":")
    if not colon or not _SCHEME_RE.fullmatch(scheme):
        return "other"
    if scheme in ("http", "https"):
        return "web"
    return "mailto" if scheme == "mailto" else "other"


def _same_target(text: str, href: str) -> bool:
    """Whether a link's text, itself a URL or an address, names the link's own target."""
    target = _href(href)
    if _MAILISH_RE.fullmatch(text) and "://" not in text:
        addr = text.lower().removeprefix("mailto:")
        if _link_kind(target) != "mailto":
            return False
        return target[len("mailto:") :].split("?", 1)[0].strip().lower() == addr
    shown = text if "://" in text else f"{urlsplit(target).scheme or 'http'}://{text}"
    try:
        return _url_key(urlsplit(shown)) == _url_key(urlsplit(target))
    except ValueError:  # a malformed URL (an unclosed IPv6 bracket, a bad port)
        return False


def _url_key(url: SplitResult) -> tuple[str, str, str, str, str]:
    scheme = url.scheme.lower()
    host = (url.hostname or "").rstrip(".")
    port = url.port
    if port is not None and (scheme, port) not in (("http", 80), ("https", 443)):
        host = f"{host}:{port}"
    return scheme, host, url.path.rstrip("/"), url.query, url.fragment


def _links(tree: LexborHTMLParser) -> list[Finding]:
    """Each ``<a>`` (an SVG one too) whose text is a URL or an address other than its target.

    A ``javascript:`` target is checked too: its scheme is :func:`_active`'s finding, and a
    link that shows ``https://shop…`` and runs a script is a mismatch besides.
    """
    out = []
    for a in tree.css("a"):
        href = _attr(a, "href")
        if href is None:
            href = _attr(a, "xlink:href")
        if href is None:
            continue
        text = " ".join(_clean(a.text(deep=True)).split())
        if (
            not text
            or " " in text
            or not (_URLISH_RE.fullmatch(text) or _MAILISH_RE.fullmatch(text))
        ):
            continue
        if not _same_target(text, href):
            out.append(
                Finding(
                    "link_text_mismatch",
                    "リンクの文字に書いたURLと、実際のリンク先が違います。フィッシングの兆候として"
                    "迷惑メールと判定されやすくなります。",
                    f"リンクの文字 {_show(text)} → リンク先 {_show(href)}",
                )
            )
    return out


# --- HTML: active content ----------------------------------------------------------------

_ACTIVE_MESSAGES = {
    "link_scheme": "メールでは使えないリンク先（javascript: など）があります。受信側で消されるか、"
    "迷惑メールと判定されます。",
    "script": "スクリプト（<script>）があります。メールソフトは実行せずに取り除き、"
    "迷惑メールと判定される原因になります。",
    "event_handler": "イベント属性（onclick などの on… 属性）があります。メールソフトは実行せずに"
    "取り除き、迷惑メールと判定される原因になります。",
    "meta_refresh": '自動で別のページへ移る指定（<meta http-equiv="refresh">）があります。'
    "メールでは動かず、フィッシングの手口として迷惑メールと判定されます。",
    "base": "<base> 要素があります。メールソフトは取り除くか無視し、相対URLのリンクや画像が"
    "壊れます。",
    "form": "フォーム（<form>）があります。多くのメールソフトは送信できないか警告を出します。"
    "入力はWebページで受け付けてください。",
    "embed": "埋め込み（<iframe>・<object>・<embed> など）があります。メールソフトは表示せずに"
    "取り除き、迷惑メールと判定される原因になります。",
    "css_remote": "CSSが外部のファイルを読み込んでいます（url()・@import・<link>）。多くの"
    "メールソフトは読み込まないため、表示が崩れます。",
}
_EMBEDS = frozenset({"iframe", "frame", "frameset", "object", "embed", "applet"})
# SVG elements whose href is an image or a shape, where a data: URL is just a picture
_SVG_PICTURES = frozenset({"image", "use", "feimage"})
_MAX_PER_CODE = 10
_LINE_END_RE = re.compile(r"\r\n?|\n")
_CSS_ESCAPE_RE = re.compile(r"\\(?:([0-9a-fA-F]{1,6})[ \t\n\r\f]?|(.))", re.DOTALL)
_CSS_URL_RE = re.compile(
    r"(?<![\w\-])url\(\s*+(?:\"([^\"]*+)|'([^']*+)|([^)\s]*+))|@import\s*+(?:\"([^\"]*+)|'([^']*+))",
    re.IGNORECASE,
)


def _css_char(m: re.Match[str]) -> str:
    if m.group(1) is None:
        return m.group(2)
    code = int(m.group(1), 16)
    return chr(code) if 0 < code <= 0x10FFFF and not 0xD800 <= code <= 0xDFFF else "\ufffd"


def _css_remote(css: str) -> Iterator[str]:
    """The URLs ``css`` loads from another host (``url()``, ``@import``), escapes decoded.

    Comments are not removed: ``u/**/rl(`` is no ``url(`` to a browser either, and a comment
    that only looks like one (``content: "/*"``) must not hide what follows it.
    """
    for m in _CSS_URL_RE.finditer(_CSS_ESCAPE_RE.sub(_css_char, css)):
        url = next(g for g in m.groups() if g is not None)
        if _remote(url):
            yield url


def _remote(url: str) -> bool:
    """Whether a CSS or stylesheet URL is fetched from a host (not data:, cid:, #id, relative)."""
    url = url.strip(" \t\n\r\f")
    if url[:2].replace("\\", "/") == "//":
        return True
    scheme = _scheme(url)
    return scheme is not None and scheme not in ("data", "cid", "mid", "about")


def _tag_text(tag: str, attrs: dict[str, str | None], names: Iterable[str]) -> str:
    shown = "".join(f' {n}="{attrs[n] or ""}"' for n in names if n in attrs)
    return f"<{tag}{shown}>"


def _node_hits(
    tag: str, attrs: dict[str, str | None], node: LexborNode
) -> Iterator[tuple[str, str]]:
    """(code, what) for each active thing one element carries."""
    low = {name.lower(): value or "" for name, value in attrs.items()}
    if tag == "script":
        yield "script", _tag_text(tag, attrs, ("src", "type"))
    elif tag in _EMBEDS:
        yield "embed", _tag_text(tag, attrs, ("src", "data", "code"))
    elif tag == "form":
        yield "form", _tag_text(tag, attrs, ("action",))
    elif tag == "base":
        yield "base", _tag_text(tag, attrs, ("href", "target"))
    elif tag == "meta" and low.get("http-equiv", "").strip().lower() == "refresh":
        yield "meta_refresh", _tag_text(tag, attrs, ("http-equiv", "content"))
    elif tag == "link" and "stylesheet" in low.get("rel", "").lower().split():
        if _remote(low.get("href", "")):
            yield "css_remote", _tag_text(tag, attrs, ("rel", "href"))
    elif tag == "style":
        for url in _css_remote(node.text(deep=True)):
            yield "css_remote", f"<style> の {url}"
    handlers = [name for name in attrs if name.lower().startswith("on") and len(name) > 2]
    if handlers:
        yield "event_handler", _tag_text(tag, attrs, handlers)
    for url in _css_remote(low.get("style", "")):
        yield "css_remote", f"<{tag} style> の {url}"
    unsafe = _SCRIPT_SCHEMES if tag in _SVG_PICTURES else _UNSAFE_SCHEMES
    for name in ("href", "xlink:href"):
        if name in low and tag not in ("link", "base") and _scheme(low[name]) in unsafe:
            yield "link_scheme", _tag_text(tag, attrs, [n for n in attrs if n.lower() == name])
    if tag in ("animate", "set") and low.get("attributename", "").lower() in (
        "href",
        "xlink:href",
    ):  # SVG animation that writes a link's target
        values = [low.get(n, "") for n in ("to", "from", "by")] + low.get("values", "").split(";")
        if any(_scheme(v) in _SCRIPT_SCHEMES for v in values):
            yield "link_scheme", _tag_text(tag, attrs, list(attrs))


class _SourceLines:
    """The line of the n-th ``<tag`` in the source, when the source has exactly as many
    ``<tag`` as the tree has such elements (so the n-th is that element); else nothing.

    A parser builds some elements without a tag in the source (a link reopened across a
    paragraph) and drops others (a ``<form>`` inside a form): then the line is left out
    rather than guessed.
    """

    def __init__(self, html: str, counts: Counter[str]) -> None:
        self.html = html
        self.counts = counts
        self._offsets: dict[str, list[int]] = {}
        self._starts: list[int] | None = None

    def at(self, tag: str, index: int) -> str:
        offsets = self._offsets.get(tag)
        if offsets is None:
            pattern = re.compile(rf"<{re.escape(tag)}(?=[\t\n\f\r />]|\Z)", re.IGNORECASE)
            offsets = self._offsets[tag] = [m.start() for m in pattern.finditer(self.html)]
        if len(offsets) != self.counts[tag]:
            return ""
        if self._starts is None:
            self._starts = [0] + [m.end() for m in _LINE_END_RE.finditer(self.html)]
        return f" {bisect.bisect_right(self._starts, offsets[index])}行目"


def _active(tree: LexborHTMLParser, html: str) -> list[Finding]:
    """Scripts, handlers, refreshes, frames, forms, ``<base>``, remote CSS and unsafe link
    schemes, on every element (hidden ones too: hiding does not make them safe), at most
    :data:`_MAX_PER_CODE` of each code, the last one saying how many more."""
    hits: dict[str, list[tuple[str, int, str]]] = {}
    more: Counter[str] = Counter()
    counts: Counter[str] = Counter()
    shown_urls: set[str] = set()
    root = tree.root
    for node in root.traverse() if root is not None else ():
        if not node.is_element_node:
            continue
        tag = (node.tag or "").lower()
        counts[tag] += 1
        for code, what in _node_hits(tag, node.attributes, node):
            if code == "css_remote":  # one finding a URL, however many elements use it
                if what.rsplit(" の ", 1)[-1] in shown_urls:
                    continue
                shown_urls.add(what.rsplit(" の ", 1)[-1])
            same = hits.setdefault(code, [])
            if len(same) < _MAX_PER_CODE:
                same.append((tag, counts[tag] - 1, what))
            else:
                more[code] += 1
    lines = _SourceLines(html, counts)
    out = []
    for code, same in hits.items():
        for i, (tag, index, what) in enumerate(same):
            extra = f"（ほかに {more[code]:,} 件）" if more[code] and i == len(same) - 1 else ""
            detail = f"HTMLパート{lines.at(tag, index)}: {_show(what)}{extra}"
            out.append(Finding(code, _ACTIVE_MESSAGES[code], detail))
    return out


# --- the rest ---------------------------------------------------------------------------

_LEFTOVER_RE = re.compile(r"\{\{|\}\}|\{%|%\}")


def _leftovers(subject: str, text: str, html: str | None) -> list[Finding]:
    out = []
    for part, value in (("件名", subject), ("テキストパート", text), ("HTMLパート", html or "")):
        found = _LEFTOVER_RE.search(value)
        if found:
            out.append(
                Finding(
                    "leftover_markup",
                    "差し込み記号が置き換えられずに残っています。",
                    f"{part}: 「{found.group()}」",
                )
            )
    return out


def _show(value: str) -> str:
    """A value for a one-line detail: controls and lone surrogates (which no output can
    encode) escaped, cut at a readable length."""
    shown = "".join(
        f"\\x{ord(c):02x}"
        if (ord(c) < 32 or 0x7F <= ord(c) <= 0x9F)
        else f"\\u{ord(c):04x}"
        if 0xD800 <= ord(c) <= 0xDFFF
        else c
        for c in value
    )
    return shown if len(shown) <= _DETAIL_MAX else shown[: _DETAIL_MAX - 1] + "…"
