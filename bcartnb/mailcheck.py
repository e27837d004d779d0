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
  ``<style>`` or a ``style`` attribute, ``@import``, ``<link rel="stylesheet">``); read by
  :mod:`bcartnb.active_content` from the same tree.
* 特定電子メール法 第4条 and its 施行規則 第9条, named as the law's guidance names them,
  looked for in **each** part a recipient may read (the text part and the HTML part):
  ``sender_name`` 送信者の氏名又は名称 (the settings' ``from`` display name);
  ``opt_out`` 受信拒否の通知先 (a URL, a mail address, a ``mailto:`` link or a reply)
  with 受信拒否ができる旨 next to it (within two lines: the guidance asks for 直前又は直後);
  ``sender_address`` 送信者の住所 (a 〒 postal code, or a prefecture and municipality);
  ``contact`` 苦情・問合せ等の受付先 (a telephone number, a mail address, or a URL beside
  お問い合わせ/連絡先).
* ``subject_empty`` and ``leftover_markup`` (a ``{{``/``{%`` left in the sent text);
  ``html_in_text``: HTML tags in a text mail's body (:mod:`bcartnb.text_markup`).

The HTML is parsed once, by an HTML5 parser (Lexbor, through selectolax), so it is read as the
recipient's client reads it: entities in attributes decoded (``&#x68;ttp`` is ``http``,
``&#106;avascript:`` is ``javascript:``), CSS escapes decoded (``u\\72l(`` is ``url(``),
a scheme read past case, white space, controls and invisible characters (``JaVa&#9;ScRiPt:``
is ``javascript:``, as lenient clients read it),
tags in any case, a link nested in a link closed as browsers close it, ``<script>``,
``<style>``, ``<head>`` and elements hidden by ``display:none`` / ``visibility:hidden`` /
``hidden`` not counted as shown text (:mod:`bcartnb.shown_text`). Whatever the input
(unclosed tags, NUL, megabytes), checking never raises.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Protocol
from urllib.parse import SplitResult, urlsplit

from selectolax.lexbor import LexborHTMLParser, LexborNode

from bcartnb.active_content import (
    ACTIVE_MESSAGES,
    SCHEME_RE,
    UNSAFE_SCHEMES,
    active_content,
    url_scheme,
)
from bcartnb.shown_text import Part, clean, html_part, text_part
from bcartnb.text_markup import (
    HTML_IN_TEXT,
    HTML_IN_TEXT_MESSAGE,
    html_in_text_detail,
    html_tags,
)

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
    "html_in_text",
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
    parts: list[Part] = [text_part(text)]
    tree = None
    if html is not None:
        tree = LexborHTMLParser(html)
        parts.append(html_part(tree))
    found: list[Finding] = []
    if not subject.strip():
        found.append(Finding("subject_empty", "件名が空です。", "件名"))
    found += _leftovers(subject, text, html)
    tags = html_tags(text) if html is None else []
    if tags:  # HTML pasted into a text mail (bcartnb.text_markup)
        found.append(Finding(HTML_IN_TEXT, HTML_IN_TEXT_MESSAGE, _show(html_in_text_detail(tags))))
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
        found += [
            Finding(
                hit.code,
                ACTIVE_MESSAGES[hit.code],
                f"HTMLパート{hit.line}: {_show(hit.what)}{hit.more}",
            )
            for hit in active_content(tree, html)
        ]
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
    return "".join(clean(text).split())


def _near(part: Part, index: int) -> Iterator[tuple[str, tuple[str, ...]]]:
    lo, hi = max(0, index - _WINDOW), min(len(part.lines), index + _WINDOW + 1)
    for j in range(lo, hi):
        yield part.lines[j], part.targets[j]


def _is_route(line: str, targets: Iterable[str]) -> bool:
    """A 受信拒否の通知先 on this line: a URL, a mail address, a link, or a stated way."""
    if _URL_RE.search(line) or _MAIL_RE.search(line) or _OPT_OUT_WAY_RE.search(line):
        return True
    return any(_link_kind(t) in ("web", "mailto") for t in targets)


def _has_opt_out(part: Part) -> str | None:
    """None when the part has both; else what it lacks, in words."""
    stated = [i for i, line in enumerate(part.lines) if _OPT_OUT_RE.search(line)]
    if not stated:
        return "受信拒否（配信停止）ができる旨の記載がありません"
    for i in stated:
        if any(_is_route(line, targets) for line, targets in _near(part, i)):
            return None
    return "配信停止の記載の前後に、通知先（URL・メールアドレス・返信の方法）がありません"


def _has_contact(part: Part) -> bool:
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


def _legal(parts: Sequence[Part], sender_name: str) -> list[Finding]:
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


def _href(value: str) -> str:
    """A URL as a browser reads an href: no tab or newline, no edge spaces or controls."""
    return _URL_JUNK_RE.sub("", value).strip(
        "\x00\x01\x02\x03\x04\x05\x06\x07\x08\x0b\x0c"
        "\x0e\x0f\x10\x11\x12\x13\x14\x15\x16\x17\x18"
        "\x19\x1a\x1b\x1c\x1d\x1e\x1f "
    )


def _link_kind(href: str) -> str:
    """ "web", "mailto", "unsafe" or "other" for an href."""
    if url_scheme(href) in UNSAFE_SCHEMES:
        return "unsafe"
    value = _href(href).lower()
    scheme, colon, _ = value.partition(":")
    if not colon or not SCHEME_RE.fullmatch(scheme):
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

    A ``javascript:`` target is checked too: its scheme is a ``link_scheme`` finding, and a
    link that shows ``https://shop…`` and runs a script is a mismatch besides.
    """
    out = []
    for a in tree.css("a"):
        href = _attr(a, "href")
        if href is None:
            href = _attr(a, "xlink:href")
        if href is None:
            continue
        text = " ".join(clean(a.text(deep=True)).split())
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
