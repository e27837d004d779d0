"""Hostile member values, end to end: Composer → SmtpTransport → the bytes on the wire.

The server here is :class:`smtp_servers.RawRecorder`, which keeps the message data exactly
as it came (before any un-dot-stuffing), so these tests see what an SMTP server sees: only
CRLF line ends, every line that starts with a dot doubled, and once un-stuffed, the message
the composer rendered. A lone CR before a dot (``\\r.\\r\\n``) is the SMTP smuggling
sequence; issue 12 found one in an ISO-2022-JP HTML mail of a member after the first.
"""

from __future__ import annotations

import email
import email.policy
import re
from collections.abc import Iterator, Sequence
from datetime import datetime
from email.message import EmailMessage
from typing import Any
from zoneinfo import ZoneInfo

import pandas as pd
import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st
from smtp_servers import RawRecorder

from bcartnb.compose import ENCODINGS, ComposedMail, Composer, Draft
from bcartnb.exceptions import ComposeError, TemplateError
from bcartnb.settings import Settings
from bcartnb.templates import is_missing
from bcartnb.transports.wire import reply_text

NOW = datetime(2026, 11, 27, 10, 30, 0, tzinfo=ZoneInfo("Asia/Tokyo"))
SHOP = "info@shop.example.co.jp"
SETTINGS = Settings(
    from_addr=SHOP,
    from_name="サンプル商店",
    signature="サンプル商店 営業部\n.署名の行は点で始まる\n〒100-0001 東京都千代田区千代田1-1",
    unsubscribe_url="https://shop.example.co.jp/stop?id={{ id }}",
)
TEXT_BODY = "{{ 会社名 }}\n{{ 担当者名 }} 様\n.点で始まる行\nいつもお世話になっております。\n"
HTML_BODY = """<html><head><style>p { color: #333333; }</style></head><body>
<p>{{ 会社名 }}<br>{{ 担当者名 }} 様</p>
<p><a href="https://shop.example.co.jp/items/?m={{ id }}">新商品</a></p>
</body></html>"""
EVIL = "テスト\r.\nMAIL FROM:<evil@example.com>"
HOSTILE_ID = 666


def person(member_id: int, **changes: Any) -> dict[str, Any]:
    return {
        "id": member_id,
        "email": f"m{member_id}@example.co.jp",
        "comp_name": "株式会社テスト商事",
        "tanto_last_name": "山田",
        "tanto_first_name": "太郎",
        **changes,
    }


def composer(*, html: bool, encoding: str, subject: str = "ご案内") -> Composer:
    draft = Draft(subject, HTML_BODY if html else TEXT_BODY, html=html, encoding=encoding)
    return Composer(draft, SETTINGS, "c-wire", clock=lambda: NOW)


@pytest.fixture(scope="module")
def recorder() -> Iterator[RawRecorder]:
    server = RawRecorder().start()
    yield server
    server.stop()


def send_all(recorder: RawRecorder, mails: Sequence[ComposedMail]) -> list[bytes]:
    """Each mail through the real SmtpTransport; the DATA bytes the server recorded."""
    before = len(recorder.data)
    with recorder.transport() as transport:
        for mail in mails:
            assert transport.send(SHOP, [mail.to], mail.raw).sent
    return recorder.data[before:]


def unstuffed(wire: bytes) -> bytes:
    """Check the wire form and undo the dot-stuffing (RFC 5321 4.5.2)."""
    assert wire.count(b"\r") == wire.count(b"\n") == wire.count(b"\r\n"), "a lone CR or LF"
    lines = wire.split(b"\r\n")
    assert lines[-1] == b"", "the data does not end in CRLF"
    for line in lines:
        assert not line.startswith(b".") or line.startswith(b".."), f"not dot-stuffed: {line!r}"
    return b"\r\n".join(line[1:] if line.startswith(b".") else line for line in lines)


def parse(raw: bytes) -> EmailMessage:
    msg = email.message_from_bytes(raw, policy=email.policy.default)
    assert isinstance(msg, EmailMessage)
    return msg


def text_of(part: EmailMessage) -> str:
    value = part.get_content()
    assert isinstance(value, str)
    return value.replace("\r\n", "\n")


def check_wire(wire: bytes, mail: ComposedMail) -> None:
    raw = unstuffed(wire)
    assert raw == mail.raw
    assert "\r" not in mail.text and "\r" not in (mail.html or "")
    msg = parse(raw)
    assert msg["Subject"] == mail.subject
    assert msg["To"] == mail.to
    if mail.html is None:
        assert text_of(msg) == mail.text
    else:
        plain, html = msg.iter_parts()
        assert text_of(plain) == mail.text  # type: ignore[arg-type]
        assert text_of(html) == mail.html  # type: ignore[arg-type]


def names_member(err: Exception, member_id: int) -> bool:
    return re.search(rf"\bmember {member_id}\b", str(err)) is not None


# --- the case of issue 12 ------------------------------------------------------------------


@pytest.mark.parametrize("html", [False, True])
@pytest.mark.parametrize("encoding", ENCODINGS)
def test_a_later_members_cr_dot_cannot_end_the_data(
    recorder: RawRecorder, html: bool, encoding: str
) -> None:
    c = composer(html=html, encoding=encoding)
    mails = [c.compose(person(1)), c.compose(person(2, comp_name=EVIL)), c.compose(person(3))]
    wires = send_all(recorder, mails)
    assert len(wires) == 3
    for wire, mail in zip(wires, mails, strict=True):
        check_wire(wire, mail)
    evil = mails[1]
    assert "テスト\n.\nMAIL FROM:" in (evil.html or evil.text)
    if encoding == "iso-2022-jp" and html:  # 7bit: the dot line is on the wire, stuffed
        assert b"\r\n..\r\nMAIL FROM:&lt;evil@example.com&gt;" in wires[1]


def test_compose_all_and_compose_give_the_same_bytes_wherever_a_member_stands() -> None:
    members = [person(1), person(2, comp_name=EVIL), person(3, comp_name='A&B "商事"')]
    for encoding in ENCODINGS:
        one_by_one = composer(html=True, encoding=encoding)
        singles = {m["id"]: one_by_one.compose(m).raw for m in reversed(members)}
        frame = pd.DataFrame(members)
        streamed = [m.raw for m in composer(html=True, encoding=encoding).compose_all(frame)]
        assert streamed == [singles[m["id"]] for m in members]


def test_the_transport_turns_a_lone_cr_or_lf_into_crlf_before_dot_stuffing(
    recorder: RawRecorder,
) -> None:
    raw = b"Subject: x\r\n\r\na\r.\r\nMAIL FROM:<e@x.jp>\n.b\rc\r\n..d"
    with recorder.transport() as transport:
        assert transport.send(SHOP, ["a@example.jp"], raw).sent
    wire = recorder.data[-1]
    assert wire == b"Subject: x\r\n\r\na\r\n..\r\nMAIL FROM:<e@x.jp>\r\n..b\r\nc\r\n...d\r\n"
    assert (
        unstuffed(wire) == b"Subject: x\r\n\r\na\r\n.\r\nMAIL FROM:<e@x.jp>\r\n.b\r\nc\r\n..d\r\n"
    )


@pytest.mark.parametrize("value", ["a\rb", "a\nb", "a\r\nb", "a\x00b"])
@pytest.mark.parametrize(
    ("subject", "settings_changes", "field"),
    [
        ("{{ 会社名 }} 様", {}, "会社名 (comp_name)"),
        ("ご案内", {"unsubscribe_url": "https://x.jp/stop?c={{ comp_name }}"}, "comp_name"),
    ],
)
def test_a_header_value_with_cr_lf_or_nul_names_member_and_field(
    value: str, subject: str, settings_changes: dict[str, str], field: str
) -> None:
    draft = Draft(subject, "本文\n", insert_signature=False)
    c = Composer(draft, SETTINGS.replace(**settings_changes), "c-wire", clock=lambda: NOW)
    with pytest.raises(ComposeError) as info:
        c.compose(person(HOSTILE_ID, comp_name=value))
    message = str(info.value)
    assert names_member(info.value, HOSTILE_ID)
    assert f"field {field}" in message
    assert ("NUL" in message) == ("\x00" in value)
    assert info.value.ja.startswith(f"会員 {HOSTILE_ID} の")


# --- any value, anywhere -------------------------------------------------------------------

_PIECES = st.one_of(
    st.sampled_from(["\r", "\n", "\r\n", ".", "..", "\x00", " ", "\t", "\x1b", "\x0e"]),
    st.sampled_from(
        ["\u3000", "\u00a0", "\u2028", "テスト", "A&B", '"', "'", "<", ">", "=?", "{{"]
    ),
    st.sampled_from(["MAIL FROM:<e@x.jp>", "①", "ｱ", "髙"]),
)
_VALUES = st.one_of(
    st.text(max_size=30),
    st.lists(_PIECES, min_size=1, max_size=12).map("".join),
    st.tuples(st.sampled_from([".", "a.", "テ", "\r."]), st.integers(300, 1100)).map(
        lambda t: t[0] * t[1]
    ),
)


def _may_fail(value: str, in_subject: bool, encoding: str) -> bool:
    """When a ComposeError or TemplateError is the right answer for this value."""
    if is_missing(value):
        return True
    if in_subject and re.search("[\x00-\x08\x0a-\x1f\x7f-\x9f]", value):
        return True  # any control character but TAB in a header
    if encoding == "iso-2022-jp" and any(c in value for c in "\x0e\x0f\x1b"):
        return True  # ISO-2022-JP's own shift and escape characters
    try:
        value.encode(encoding)
    except UnicodeEncodeError:
        return True
    return False


@hsettings(
    max_examples=100,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(
    value=_VALUES,
    encoding=st.sampled_from(ENCODINGS),
    html=st.booleans(),
    later=st.booleans(),
    in_subject=st.booleans(),
    streamed=st.booleans(),
)
def test_any_member_value_reaches_the_wire_crlf_and_dot_stuffed_or_is_refused(
    recorder: RawRecorder,
    value: str,
    encoding: str,
    html: bool,
    later: bool,
    in_subject: bool,
    streamed: bool,
) -> None:
    subject = "{{ 会社名 }} 様へのご案内" if in_subject else "ご案内"
    c = composer(html=html, encoding=encoding, subject=subject)
    hostile = person(HOSTILE_ID, comp_name=value, tanto_first_name=value[:5] or "太郎")
    members = [person(1), hostile] if later else [hostile, person(1)]
    try:
        if streamed:
            mails = list(c.compose_all(pd.DataFrame(members)))
        else:
            mails = [c.compose(m) for m in members]
    except (ComposeError, TemplateError) as err:
        assert names_member(err, HOSTILE_ID), str(err)
        assert _may_fail(value, in_subject, encoding) or _may_fail(
            hostile["tanto_first_name"], False, encoding
        ), str(err)
        return
    wires = send_all(recorder, mails)
    for wire, mail in zip(wires, mails, strict=True):
        check_wire(wire, mail)
    # the plain member went through the fast path, the path most mails take
    assert not html or c.paths["fast_text"] >= 1


@pytest.mark.parametrize("ch", ["\x1b", "\x07", "\x7f", "\x85", "\x9b", "\x01"])
def test_a_control_character_in_a_subject_is_refused_naming_member_and_field(ch: str) -> None:
    """ESC, BEL, DEL and the C1 range are invisible in a subject and acted on by terminals."""
    c = composer(html=False, encoding="utf-8", subject="{{ 会社名 }} 様へのご案内")
    with pytest.raises(ComposeError) as err:
        c.compose(person(HOSTILE_ID, comp_name=f"見本{ch}商事"))
    assert names_member(err.value, HOSTILE_ID)
    assert f"U+{ord(ch):04X}" in str(err.value) and "会社名" in err.value.ja
    assert "制御文字" in err.value.ja


def test_a_tab_in_a_subject_is_kept() -> None:
    c = composer(html=False, encoding="utf-8", subject="{{ 会社名 }} 様へのご案内")
    mail = c.compose(person(1, comp_name="見本\t商事"))
    assert mail.subject.startswith("見本\t商事")


def _reply_text_per_character(reply: bytes) -> str:
    """The reply rule before its whole-string fast path: every character looked at."""
    text = reply.decode("utf-8", "replace")
    clean = " ".join("".join(c if c.isprintable() else " " for c in text).split())
    return clean if len(clean) <= 500 else clean[:499] + "…"


@given(
    st.one_of(
        st.binary(max_size=700),
        st.text(max_size=700).map(lambda s: s.encode("utf-8", "surrogatepass")),
        st.text(alphabet="250 OK\r\n\x1b[31m\x00\u202e\u3000\t-é", max_size=700).map(str.encode),
    )
)
def test_a_server_reply_is_cleaned_as_by_looking_at_every_character(reply: bytes) -> None:
    """The send loop cleans four replies a mail; most are printable already, so the rule
    skips the per-character pass for them. Any reply, hostile ones included, comes out as
    the per-character rule makes it: one printable line of at most 500 characters."""
    assert reply_text(reply) == _reply_text_per_character(reply)
    assert reply_text(reply.decode("utf-8", "replace")) == _reply_text_per_character(reply)
    assert reply_text(reply).isprintable() and len(reply_text(reply)) <= 500
