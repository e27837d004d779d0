"""ISO-2022-JP, byte by byte: what a strict Japanese mail client reads, not Python's lenient codec.

RFC 1468: the text starts in ASCII, switches to JIS X 0208 with ESC $ B and back with ESC ( B,
and every line ends in ASCII; RFC 2047: each encoded word is decoded on its own, so each must
end in ASCII too. Python's codec decodes a line left in JIS without complaint; a mail client
shows the next line as garbage. So the bytes are walked here by a small reader of the rules,
and one fixed mail is compared with reference bytes written out by hand from the JIS X 0208
table (サ = 0x2535, written ``%5``; 商 = 0x3E26, ``>&``; …).
"""

from __future__ import annotations

import base64
import re
from datetime import datetime
from zoneinfo import ZoneInfo

from hypothesis import given, settings
from hypothesis import strategies as st

from bcartnb.compose import Composer, Draft
from bcartnb.settings import Settings

NOW = datetime(2026, 11, 27, 10, 0, 0, tzinfo=ZoneInfo("Asia/Tokyo"))
SHOP = Settings(from_addr="info@shop.example.co.jp", from_name="サンプル商店")
ESCAPES = {b"\x1b$B": "jis", b"\x1b$@": "jis", b"\x1b(B": "ascii", b"\x1b(J": "roman"}
WORD = re.compile(rb"=\?ISO-2022-JP\?B\?([A-Za-z0-9+/]*={0,2})\?=", re.IGNORECASE)


def ends_in_ascii(data: bytes) -> bool:
    """Walk ``data`` by RFC 1468: only its escapes, JIS as pairs of 0x21-0x7E, and ASCII (not
    JIS Roman, not JIS) at the end. False at the first byte that breaks a rule."""
    mode, i = "ascii", 0
    while i < len(data):
        if data[i] == 0x1B:
            mode = ESCAPES.get(data[i : i + 3], "")
            if not mode:
                return False
            i += 3
        elif mode == "jis":
            pair = data[i : i + 2]
            if len(pair) != 2 or not all(0x21 <= b <= 0x7E for b in pair):
                return False
            i += 2
        elif data[i] >= 0x80 or data[i] in (0x0E, 0x0F):
            return False
        else:
            i += 1
    return mode == "ascii"


def check_bytes(raw: bytes) -> int:
    """Every header's encoded words and every body line of ``raw`` end in ASCII; how many
    JIS runs were seen (so a test knows it checked something)."""
    head, _, body = raw.partition(b"\r\n\r\n")
    assert all(b < 0x80 for b in raw), "8-bit byte in a 7bit mail"
    runs = 0
    for word in WORD.findall(head):
        decoded = base64.b64decode(word, validate=True)
        assert ends_in_ascii(decoded), decoded
        runs += decoded.count(b"\x1b$B")
    unfolded = WORD.sub(b"", head)
    assert b"\x1b" not in unfolded, "an escape outside an encoded word"
    for line in body.split(b"\r\n"):
        assert ends_in_ascii(line), line
        runs += line.count(b"\x1b$B")
    return runs


def composer(subject: str, body: str, *, html: bool = False, shop: Settings = SHOP) -> Composer:
    draft = Draft(subject, body, html=html, encoding="iso-2022-jp")
    return Composer(draft, shop, "c-1", clock=lambda: NOW)


def test_a_small_mail_is_exactly_the_reference_bytes() -> None:
    mail = composer("ご案内 {{ 会社名 }} 様", "{{ 会社名 }}\nテスト本文です。\n").compose(
        {"id": 1, "email": "a@example.co.jp", "comp_name": "見本商事"}
    )
    # サンプル商店 / ご案内 見本商事 様 / テスト本文です。, from the JIS X 0208 table
    from_word = b"\x1b$B%5%s%W%k>&E9\x1b(B"
    subject_word = b"\x1b$B$40FFb\x1b(B \x1b$B8+K\\>&;v\x1b(B \x1b$BMM\x1b(B"
    assert mail.raw == (
        b"From: =?ISO-2022-JP?B?" + base64.b64encode(from_word) + b"?= "
        b"<info@shop.example.co.jp>\r\n"
        b"To: a@example.co.jp\r\n"
        b"Subject: =?ISO-2022-JP?B?" + base64.b64encode(subject_word) + b"?=\r\n"
        b"Date: Fri, 27 Nov 2026 10:00:00 +0900\r\n"
        b"Message-ID: <bcartnb.c-1.1@shop.example.co.jp>\r\n"
        b"MIME-Version: 1.0\r\n"
        b'Content-Type: text/plain; charset="ISO-2022-JP"\r\n'
        b"Content-Transfer-Encoding: 7bit\r\n"
        b"\r\n"
        b"\x1b$B8+K\\>&;v\x1b(B\r\n"
        b"\x1b$B%F%9%HK\\J8$G$9!#\x1b(B\r\n"
    )
    assert check_bytes(mail.raw) == 6  # From 1, Subject 3, body 2


def test_the_reader_refuses_what_a_strict_client_would_garble() -> None:
    assert ends_in_ascii(b"abc") and ends_in_ascii(b"\x1b$B%F\x1b(B x")
    assert not ends_in_ascii(b"\x1b$B%F")  # left in JIS at the end of the line
    assert not ends_in_ascii(b"\x1b$B%F\x1b(J")  # JIS Roman is not ASCII
    assert not ends_in_ascii(b"\x1b$B%\x1b(B")  # half a character
    assert not ends_in_ascii(b"\x1b$B%F\r\n\x1b(B")  # a line break inside JIS
    assert not ends_in_ascii(b"\x1b$Ax\x1b(B")  # an escape RFC 1468 does not know
    assert not ends_in_ascii("テ".encode())  # 8-bit


# Characters every ISO-2022-JP mail can carry: JIS X 0208 kana, kanji and marks, and ASCII.
JAPANESE = st.text(
    "あいうえおかがさざぱんアイウエオカガサザパンヴー見本商事株式会社東京都様御中。、「」・　"
    "abcXYZ0189 .-",
    min_size=1,
    max_size=60,
).filter(lambda v: v.strip(" 　") == v)


@settings(max_examples=150, deadline=None)
@given(name=JAPANESE, person=JAPANESE, html=st.booleans())
def test_every_header_word_and_body_line_returns_to_ascii(
    name: str, person: str, html: bool
) -> None:
    body = (
        "<p>{{ 会社名 }}</p><p>{{ 担当者名 }} 様</p><p>長い行: {{ 会社名 }}{{ 会社名 }}</p>"
        if html
        else "{{ 会社名 }}\n{{ 担当者名 }} 様\n長い行: {{ 会社名 }}{{ 会社名 }}{{ 会社名 }}\n"
    )
    signed = SHOP.replace(signature="サンプル商店 営業部\n〒100-0001 東京都千代田区千代田1-1")
    c = composer("【ご案内】{{ 会社名 }} {{ 担当者名 }} 様", body, html=html, shop=signed)
    member = {"id": 7, "email": "a@example.co.jp", "comp_name": name, "tanto_last_name": person}
    mail = c.compose(member)
    assert check_bytes(mail.raw) >= 1  # the fixed 「ご案内」 alone is one JIS run
