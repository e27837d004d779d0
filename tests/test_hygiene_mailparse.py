"""The scan's parser gives the message ``email.message_from_bytes(raw, policy=compat32)`` gives,
part for part: headers, payloads, preambles, epilogues, defects and the bytes it writes back;
over the samples and their variants and over hypothesis's multiparts, whose boundaries hold
every character a regular expression treats as special, and whose boundary lines carry
trailing dashes, blanks and every line end."""

from __future__ import annotations

import email
import re
from email.message import Message
from email.policy import compat32
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bcartnb.hygiene.mailparse import parse_bytes

DATA = Path(__file__).parent / "data" / "bounces"
SAMPLES = sorted(p.name for p in DATA.glob("*.eml"))


def shape(msg: Message) -> list[object]:
    out: list[object] = []
    for part in msg.walk():
        out.append(
            (
                part._headers,  # type: ignore[attr-defined]
                part.get_unixfrom(),
                None if part.is_multipart() else part.get_payload(),
                part.preamble,
                part.epilogue,
                [type(d).__name__ for d in part.defects],
                part.get_default_type(),
            )
        )
    return out


def same_parse(raw: bytes) -> None:
    ours, stdlib = parse_bytes(raw), email.message_from_bytes(raw, policy=compat32)
    assert shape(ours) == shape(stdlib), raw[:300]
    assert written(ours) == written(stdlib)


def written(msg: Message) -> bytes | str:
    """The bytes the message writes back, or the error it stops with (both alike)."""
    try:
        return msg.as_bytes()
    except UnicodeEncodeError as err:  # text that is not ASCII, as the generator refuses it
        return type(err).__name__


def test_a_boundary_line_is_told_from_its_near_misses() -> None:
    """The parts are cut where the standard parser cuts them, not merely the same message."""
    raw = (
        b'Content-Type: multipart/mixed; boundary="a.b*c"\n\npreamble\n'
        b"--a.b*c\n\none\n--aXb*c\n--a.b*cc\n--a.b*c \t\n\ntwo\n--a.b*c-- \nepilogue\n"
    )
    msg = parse_bytes(raw)
    parts = msg.get_payload()
    assert isinstance(parts, list)
    assert [p.get_payload() for p in parts] == ["one\n--aXb*c\n--a.b*cc", "two"]
    assert (msg.preamble, msg.epilogue) == ("preamble", "epilogue\n")
    same_parse(raw)


@pytest.mark.parametrize("name", SAMPLES)
def test_every_sample_parses_as_the_standard_library_parses_it(name: str) -> None:
    raw = (DATA / name).read_bytes()
    for variant in (
        raw,
        raw.replace(b"\n", b"\r\n"),
        raw.replace(b"\n", b"\r"),
        raw[: len(raw) // 2],
        raw.replace(b"boundary=", b"boundary=x"),
        raw.replace(b"Content-Type: text/rfc822-headers", b"Content-Type: message/rfc822"),
    ):
        same_parse(variant)


_SPECIAL = st.sampled_from(list("abcXYZ019 '()+_,-./:=?*[]^$|{}\\\t\"#&~"))
_END = st.sampled_from(["\n", "\r\n", "\r", "", " \n", "\t\t\r\n", "--\n", "--", "-- \r\n", "x\n"])


@st.composite
def multipart(draw: st.DrawFn, depth: int = 0) -> str:
    """A multipart whose boundary and boundary lines are made to trip a wrong matcher."""
    boundary = "".join(draw(st.lists(_SPECIAL, min_size=1, max_size=20))).strip() or "b"
    quoted = boundary.replace("\\", "\\\\").replace('"', '\\"')
    ctype = draw(st.sampled_from(["mixed", "report; report-type=delivery-status", "alternative"]))
    out = f'Content-Type: multipart/{ctype}; boundary="{quoted}"\n\n'
    out += draw(st.text(st.sampled_from("ab-\n"), max_size=10))
    for _ in range(draw(st.integers(0, 4))):
        out += "--" + boundary + draw(_END)
        if depth < 2 and draw(st.booleans()):
            out += draw(multipart(depth + 1))
        else:
            out += "Content-Type: text/plain\n\n" + draw(st.text(max_size=30)) + "\n"
        if draw(st.booleans()):  # a line that starts like the boundary but is not it
            out += "--" + boundary[:-1] + draw(_END)
    if draw(st.booleans()):
        out += "--" + boundary + draw(_END)
    return out


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(text=multipart(), crlf=st.booleans())
def test_any_multipart_parses_as_the_standard_library_parses_it(text: str, crlf: bool) -> None:
    raw = text.encode("utf-8", "surrogateescape")
    same_parse(raw.replace(b"\n", b"\r\n") if crlf else raw)


@settings(max_examples=150, deadline=None)
@given(raw=st.binary(max_size=3000))
def test_any_bytes_parse_as_the_standard_library_parses_them(raw: bytes) -> None:
    same_parse(raw)
    same_parse(re.sub(rb"^", b"Content-Type: multipart/mixed; boundary=x\n\n--x\n", raw))


def test_a_long_mail_is_fed_in_the_standard_parser_s_chunks() -> None:
    """Past 8,192 characters the text reaches the parser in the same pieces (a CRLF across
    a piece's edge)."""
    body = "x" * 8191 + "\r\n--z\r\n\r\nafter\r\n--z--\r\n"
    same_parse(f"Content-Type: multipart/mixed; boundary=z\r\n\r\n{body}".encode())
