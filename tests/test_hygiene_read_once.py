"""Each bounce mail parsed once reads exactly as before: the same findings, references, named
addresses, tokens, date and content key as the reading it replaced (tests/bounces_before.py),
over the samples, a generated corpus of every shape the scan meets, and hypothesis's mails."""

from __future__ import annotations

import base64
import re
from datetime import UTC, datetime
from pathlib import Path

import bounces_before
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bcartnb.hygiene.bounces import parse_message, unsubscribe_pattern

DATA = Path(__file__).parent / "data" / "bounces"
NOW = datetime(2026, 12, 1, tzinfo=UTC)
PATTERNS = [
    None,
    unsubscribe_pattern("mailto:unsubscribe@shop.example.co.jp?subject=unsubscribe"),
    unsubscribe_pattern("mailto:unsubscribe+{{ token }}@shop.example.co.jp"),
]
SAMPLES = sorted(p.name for p in DATA.glob("*.eml"))


def same_reading(raw: bytes) -> None:
    for pattern in PATTERNS:
        before = bounces_before.parse_message(raw, unsubscribe_to=pattern, now=NOW)
        assert parse_message(raw, unsubscribe_to=pattern, now=NOW) == before, raw[:300]


@pytest.mark.parametrize("name", SAMPLES)
def test_every_sample_reads_as_before_and_so_does_each_variant(name: str) -> None:
    raw = (DATA / name).read_bytes()
    for variant in (
        raw,
        raw.replace(b"\n", b"\r\n"),  # CRLF, as IMAP hands it over
        b"From MAILER-DAEMON Sun Dec  6 10:00:00 2026\n" + raw.replace(b"\nFrom ", b"\n>From "),
        raw[: len(raw) // 2],  # cut mid-way (a size limit, a broken download)
        raw.replace(b"Content-Type: text/rfc822-headers", b"Content-Type: message/rfc822"),
        raw.replace(b"boundary=", b"boundary=x"),  # parts that never close
        raw.replace(b"MAILER-DAEMON", b"shop").replace(b"Return-Path: <>", b""),
        raw.lower(),
    ):
        same_reading(variant)


SHOP = "shop.example.co.jp"


def dsn(
    i: int, *, action: str, status: str, headers_b64: bool = False, verp: bool = False
) -> bytes:
    """A Postfix-shaped DSN, as bench/bench_bounces.py generates them, with the variations a
    real mailbox adds."""
    rcpt = f"member{i}@example.jp"
    to = f"shop+c1.{i}.abcdefghijklmnop@{SHOP}" if verp else f"shop@{SHOP}"
    quoted = (
        f"Return-Path: <shop@{SHOP}>\nTo: {rcpt}\nSubject: news\n"
        f"Message-ID: <bcartnb.c1.{i}@{SHOP}>\n"
    )
    if headers_b64:
        part = (
            "Content-Type: text/rfc822-headers\nContent-Transfer-Encoding: base64\n\n"
            + base64.encodebytes(quoted.encode()).decode()
        )
    else:
        part = "Content-Type: text/rfc822-headers\n\n" + quoted
    return (
        f"Return-Path: <>\nDelivered-To: {to}\n"
        f"Date: Sun, 29 Nov 2026 10:{i % 60:02d}:00 +0900\n"
        f"From: MAILER-DAEMON@mail.{SHOP} (Mail Delivery System)\n"
        f"Subject: Undelivered Mail Returned to Sender\nTo: {to}\n"
        "Auto-Submitted: auto-replied\nMIME-Version: 1.0\n"
        f'Content-Type: multipart/report; report-type=delivery-status; boundary="B{i}"\n\n'
        f"--B{i}\nContent-Type: text/plain; charset=us-ascii\n\n"
        f"<{rcpt}>: host mx.example.jp said: 550 {status} Recipient address rejected\n\n"
        f"--B{i}\nContent-Type: message/delivery-status\n\n"
        f"Reporting-MTA: dns; mail.{SHOP}\n\n"
        f"Final-Recipient: rfc822; {rcpt}\nAction: {action}\nStatus: {status}\n\n"
        f"--B{i}\n{part}\n--B{i}--\n"
    ).encode()


def arf(i: int, *, feedback: str = "abuse", jmrp: bool = False) -> bytes:
    rcpt = f"member{i}@example.jp"
    original = (
        f"From: shop@{SHOP}\nTo: {'redacted' if jmrp else rcpt}\n"
        + (f"X-HmXmrOriginalRecipient: <{rcpt}>\n" if jmrp else "")
        + f"Return-Path: <shop+c1.{i}.abcdefghijklmnop@{SHOP}>\n"
        f"Message-ID: <bcartnb.c1.{i}@{SHOP}>\n\nnews\n"
    )
    return (
        "From: feedback@arf.example.com\nTo: fbl@shop.example.co.jp\nSubject: FW: news\n"
        "MIME-Version: 1.0\n"
        'Content-Type: multipart/report; report-type=feedback-report; boundary="P"\n\n'
        "--P\nContent-Type: text/plain\n\nAn abuse report\n\n"
        f"--P\nContent-Type: message/feedback-report\n\nFeedback-Type: {feedback}\n"
        f"Original-Rcpt-To: <{'' if jmrp else rcpt}>\n\n"
        f"--P\nContent-Type: message/rfc822\n\n{original}\n--P--\n"
    ).encode()


def unsubscribe(i: int, *, auto: bool = False) -> bytes:
    token = "t" * 30 + str(i)
    return (
        f"From: Member {i} <member{i}@example.jp>\n"
        f"To: unsubscribe+{token}@{SHOP}\nSubject: unsubscribe {token}\n"
        + ("Auto-Submitted: auto-replied\n" if auto else "")
        + "Content-Type: text/plain; charset=iso-2022-jp\n\n"
        + "配信停止をお願いします。\n"
    ).encode("iso-2022-jp")


def carrier(i: int) -> bytes:
    return (
        "From: Postmaster@ezweb.ne.jp\nSubject: Mail System Error - Returned Mail\n"
        f"To: shop@{SHOP}\nContent-Type: text/plain; charset=utf-8\n\n"
        f"以下のアドレスへ送信できませんでした。\n宛先: user{i}@ezweb.ne.jp\n"
        "理由: 550 Unknown user (存在しません)\n\n"
        f"------ Original message ------\nMessage-ID: <bcartnb.c1.{i}@{SHOP}>\n"
        f"To: other{i}@example.jp\n"
    ).encode()


def corpus() -> list[bytes]:
    out: list[bytes] = []
    for i in range(40):
        out += [
            dsn(i, action="failed", status="5.1.1", verp=i % 3 == 0),
            dsn(i, action="delayed", status="4.2.2", headers_b64=i % 2 == 0),
            dsn(i, action="failed", status="4.2.2"),
            arf(i, jmrp=i % 2 == 1, feedback=("abuse", "not-spam", "")[i % 3]),
            unsubscribe(i, auto=i % 4 == 0),
            carrier(i),
        ]
    nested = b"Content-Type: multipart/mixed; boundary=a\n\n--a\n" * 60 + b"text\n"
    out += [nested, b"", b"\x00\xff" * 50, b"From: \n\n", dsn(1, action="x", status="")]
    return out


def test_a_generated_corpus_of_every_shape_reads_as_before() -> None:
    for raw in corpus():
        same_reading(raw)


_PIECES = [
    "From: MAILER-DAEMON@mx.example.jp\n",
    "From: Member <member@example.jp>\n",
    "From: =?utf-8?b?5bGx55Sw?= <yamada@example.jp>\n",
    f"To: unsubscribe@{SHOP}\n",
    f"To: shop+c1.7.abcdefghijklmnop@{SHOP}\n",
    "Cc: a@example.jp, b@example.jp\n",
    "Auto-Submitted: auto-replied\n",
    "Return-Path: <>\n",
    "Subject: Returned mail: see transcript\n",
    "Subject: =?ISO-2022-JP?B?GyRCR1s/LklUR10bKEI=?=\n",
    "Date: Sun, 29 Nov 2026 10:00:00 +0900\n",
    "Date: yesterday\n",
    f"In-Reply-To: <bcartnb.c1.8@{SHOP}>\n",
    "References: <other@example.com>\n",
    "X-Failed-Recipients: gone@example.jp\n",
]


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    heads=st.lists(st.sampled_from(_PIECES), max_size=6),
    shape=st.sampled_from(["dsn", "delay", "arf", "unsub", "carrier", "none"]),
    i=st.integers(0, 10**6),
    cut=st.integers(0, 4000),
    noise=st.text(max_size=80),
    flip=st.tuples(st.integers(0, 4000), st.integers(0, 255)),
)
def test_any_mail_built_from_the_shapes_reads_as_before(
    heads: list[str], shape: str, i: int, cut: int, noise: str, flip: tuple[int, int]
) -> None:
    body = {
        "dsn": lambda: dsn(i, action="failed", status="5.1.1", verp=i % 2 == 0),
        "delay": lambda: dsn(i, action="delayed", status="4.2.2", headers_b64=True),
        "arf": lambda: arf(i, jmrp=i % 2 == 0),
        "unsub": lambda: unsubscribe(i, auto=i % 2 == 0),
        "carrier": lambda: carrier(i),
        "none": lambda: b"Content-Type: text/plain\n\nhello\n",
    }[shape]()
    raw = "".join(heads).encode() + body
    raw = raw.replace(b"Recipient address rejected", noise.encode("utf-8", "replace"))
    same_reading(raw)
    same_reading(raw[:cut])
    at, byte = flip
    if at < len(raw):
        same_reading(raw[:at] + bytes([byte]) + raw[at + 1 :])


@settings(max_examples=100, deadline=None)
@given(raw=st.binary(max_size=3000))
def test_any_bytes_read_as_before(raw: bytes) -> None:
    same_reading(raw)
    same_reading(re.sub(rb"^", b"Content-Type: multipart/report; boundary=x\n\n--x\n", raw))
