"""Reading one mail of the bounce mailbox: the samples in tests/data/bounces and hostile mail."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bcartnb.hygiene.bounces import clean_address, parse_message, unsubscribe_pattern
from bcartnb.mailtokens import VerpSigner, parse_message_id, parse_verp

DATA = Path(__file__).parent / "data" / "bounces"
NOW = datetime(2026, 12, 1, tzinfo=UTC)
UNSUB = unsubscribe_pattern("mailto:unsubscribe@shop.example.co.jp?subject=unsubscribe")
CID = "20261101-100000-abc123"

# file → (kind, address, status or None, member id of the campaign mail it quotes)
EXPECTED = {
    "postfix-user-unknown.eml": ("hard_bounce", "taro@example.jp", "5.1.1", "1001"),
    "postfix-delayed.eml": ("soft_bounce", "hanako@example.ne.jp", "4.2.2", "1002"),
    "exim-failed.eml": ("hard_bounce", "jiro@example.net", "5.1.1", "1003"),
    "gmail-mailbox-full.eml": ("soft_bounce", "saburo.example@gmail.com", "4.2.2", "1004"),
    "m365-recipient-not-found.eml": ("hard_bounce", "shiro@contoso.example", "5.1.10", "1005"),
    "au-ezweb-user-unknown.eml": ("hard_bounce", "goro-xyz@ezweb.ne.jp", None, "1006"),
    "docomo-unknown-user.ja.eml": ("hard_bounce", "rokuro.abc@docomo.ne.jp", None, "1007"),
    "softbank-mailbox-full.ja.eml": ("soft_bounce", "nanako@i.softbank.jp", "4.2.2", "1008"),
    "arf-yahoo.eml": ("complaint", "hachiro@yahoo.example", None, "1009"),
    "arf-microsoft-jmrp.eml": ("complaint", "kuro@outlook.example", None, "1010"),
    "mailto-unsubscribe.eml": ("unsubscribed", "juro@example.org", None, None),
}


def test_every_sample_is_listed_and_documented() -> None:
    files = {p.name for p in DATA.glob("*.eml")}
    assert files == set(EXPECTED)
    readme = (DATA / "README.md").read_text(encoding="utf-8")
    assert all(f"`{name}`" in readme for name in files)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_sample(name: str) -> None:
    kind, address, status, member = EXPECTED[name]
    parsed = parse_message((DATA / name).read_bytes(), unsubscribe_to=UNSUB, now=NOW)
    assert [(f.kind, f.address) for f in parsed.findings] == [(kind, address)]
    if status is not None:
        assert parsed.findings[0].status == status
    if kind.endswith("bounce"):  # the status decides hard or soft, one truth
        first = (parsed.findings[0].status or "5")[0]
        assert first == ("4" if kind == "soft_bounce" else "5")
    refs = [(r.campaign, r.member) for r in parsed.refs]
    assert refs == ([] if member is None else [(CID, member)])
    assert parsed.at <= NOW and len(parsed.content) == 64
    assert not parsed.foreign_ids  # each sample quotes our mail and no other


def test_flufl_reports_a_4xx_failure_as_permanent_and_we_read_the_status() -> None:
    """Gmail gives up on a full mailbox with Action: failed, Status 4.2.2: soft, not hard."""
    import email
    from email.policy import compat32

    from flufl.bounce import all_failures

    raw = (DATA / "gmail-mailbox-full.eml").read_bytes()
    temporary, permanent = all_failures(email.message_from_bytes(raw, policy=compat32))
    assert permanent == {b"saburo.example@gmail.com"} and not temporary
    parsed = parse_message(raw, now=NOW)
    assert parsed.findings[0].kind == "soft_bounce"


def test_what_a_notice_says_keys_it_not_its_headers_nor_its_own_message_id() -> None:
    raw = (DATA / "postfix-delayed.eml").read_bytes()
    a = parse_message(raw, now=NOW)
    key = a.content_key(a.findings[0])
    # a copy under another Message-ID, a mail client's Status: RO, an mbox's ">From " quoting
    copies = [
        re.sub(rb"(?m)^Message-I[dD]: <[^>]*>", b"Message-ID: <copy@mx>", raw),
        re.sub(rb"(?m)^Message-I[dD]: .*\n", b"", raw),
        raw.replace(b"\n\n", b"\nStatus: RO\nX-Status: A\n\n", 1),
    ]
    for copy in copies:
        b = parse_message(copy, now=NOW)
        assert b.content_key(b.findings[0]) == key
    # another recipient or another status is another notice
    other = parse_message(raw.replace(b"hanako@example.ne.jp", b"hana@example.ne.jp"), now=NOW)
    assert other.content_key(other.findings[0]) != key


def test_unsubscribe_needs_the_mailto_address_and_no_auto_reply() -> None:
    raw = (DATA / "mailto-unsubscribe.eml").read_bytes()
    assert parse_message(raw, now=NOW).findings == ()  # no mailto configured: nothing
    other = unsubscribe_pattern("mailto:stop@shop.example.co.jp")
    assert parse_message(raw, unsubscribe_to=other, now=NOW).findings == ()
    vacation = raw.replace(b"Subject: unsubscribe", b"Auto-Submitted: auto-replied\nSubject: OOO")
    assert parse_message(vacation, unsubscribe_to=UNSUB, now=NOW).findings == ()
    templated = unsubscribe_pattern("unsubscribe+{{ id }}@shop.example.co.jp")
    assert templated is not None
    assert templated.fullmatch("unsubscribe+1001@shop.example.co.jp")
    assert not templated.fullmatch("unsubscribe+1001@evil.example")


def test_verp_carries_a_tag_only_the_secret_makes_and_message_ids_parse() -> None:
    signer = VerpSigner("s" * 20 + "ecret-of-the-shop-0123456789")
    address = signer.address("bounces@shop.example.co.jp", CID, 1001)
    local = address.partition("@")[0]
    assert local.startswith(f"bounces+{CID}.1001.") and len(local) <= 64
    ref = parse_verp(address)
    assert ref is not None and (ref.campaign, ref.member, ref.via) == (CID, "1001", "verp")
    assert ref.tag == signer.tag(CID, 1001)
    shouted = parse_verp(address.upper())  # a server that changes the case: still read
    assert shouted is not None and (shouted.campaign.lower(), shouted.tag) == (CID, ref.tag)
    other = VerpSigner("another-secret-of-another-shop-0123456789")
    assert other.tag(CID, 1001) != ref.tag and signer.tag(CID, 1002) != ref.tag
    odd = signer.address("b@x.jp", "キャンペーン 1", 7)  # not a token: hashed, still parseable
    assert parse_verp(odd) is not None and "キ" not in odd
    assert parse_verp("shop@shop.example.co.jp") is None
    assert parse_verp(f"bounces+{CID}.1001@shop.example.co.jp") is None  # untagged: not ours
    assert "ecret-of" not in repr(signer)
    refs = parse_message_id(f"<a@b> <bcartnb.{CID}.7@x.jp>\r\n <bcartnb.{CID}.8@x.jp>")
    assert [r.member for r in refs] == ["7", "8"]


def test_a_notice_quoting_a_message_id_not_ours_says_so() -> None:
    raw = (DATA / "postfix-user-unknown.eml").read_text(encoding="utf-8")
    foreign = raw.replace(f"<bcartnb.{CID}.1001@shop.example.co.jp>", "<staff-mail-42@pc.shop>")
    parsed = parse_message(foreign.encode(), now=NOW)
    assert parsed.foreign_ids and parsed.refs == ()
    exim = (DATA / "exim-failed.eml").read_text(encoding="utf-8")
    quoted = exim.replace(f"<bcartnb.{CID}.1003@shop.example.co.jp>", "<other@elsewhere.jp>")
    assert parse_message(quoted.encode(), now=NOW).foreign_ids


@pytest.mark.parametrize(
    "value",
    [
        "a@b",
        "a b@c.jp",
        "a@b.jp\r\nBcc: x@y.jp",
        "a\x00@b.jp",
        "<a@b.jp>,c@d.jp",
        "x" * 300 + "@b.jp",
    ],
)
def test_clean_address_refuses_what_is_not_one_address(value: str) -> None:
    assert clean_address(value) is None


def _dsn(recipient: str, *, status: str = "5.1.1", extra: str = "") -> bytes:
    raw = (DATA / "postfix-user-unknown.eml").read_text(encoding="utf-8")
    raw = raw.replace("taro@example.jp", recipient).replace("Status: 5.1.1", f"Status: {status}")
    return (raw + extra).encode("utf-8", "surrogateescape")


def test_hostile_mail_never_crashes_nor_names_an_address_it_does_not_name() -> None:
    cases = [
        b"",
        b"\x00" * 1000,
        b"garbage without headers",
        b"Content-Type: multipart/report; report-type=delivery-status; boundary=x\n\n--x\n"
        b"Content-Type: message/delivery-status\n\nFinal-Recipient: rfc822;\x00\n--",
        b"Content-Type: multipart/mixed; boundary=\n\n--\n--\n",
        b'Content-Type: multipart/report; boundary="a"\n\n' + b"--a\n" * 5000,
        _dsn("evil@example.jp\r\nBcc: victim@example.jp"),
        _dsn("<script>alert(1)</script>@example.jp"),
        b"From: MAILER-DAEMON@x.jp\nSubject: Returned mail\n\n" + b"A" * 6_000_000,
    ]
    for raw in cases:
        parsed = parse_message(raw, now=NOW)
        for f in parsed.findings:
            assert f.address is None or f.address.encode() in raw.lower()
            assert f.address is None or _ADDRESS_SHAPE.fullmatch(f.address)
    crlf = parse_message(_dsn("evil@example.jp\r\nBcc: victim@example.jp"), now=NOW)
    assert "victim@example.jp" not in {f.address for f in crlf.findings}


def test_a_notice_that_only_quotes_an_address_does_not_name_it() -> None:
    raw = (
        b"From: MAILER-DAEMON@mx.example.jp\nSubject: Returned mail\n"
        b"To: shop@shop.example.co.jp\n\n"
        b"Your message could not be delivered.\n\n"
        b"------ This is a copy of the original message ------\n"
        b"To: innocent@example.jp\nSubject: user unknown does not exist\n"
    )
    assert all(f.address != "innocent@example.jp" for f in parse_message(raw, now=NOW).findings)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    headers=st.lists(
        st.tuples(
            st.sampled_from(
                ["From", "To", "Subject", "Content-Type", "Message-ID", "X-Failed-Recipients"]
            ),
            st.text(max_size=60),
        ),
        max_size=6,
    ),
    body=st.binary(max_size=2000),
)
def test_any_mail_parses_without_raising_and_names_only_what_it_holds(
    headers: list[tuple[str, str]], body: bytes
) -> None:
    raw = "".join(f"{k}: {v}\n" for k, v in headers).encode("utf-8", "replace") + b"\n" + body
    parsed = parse_message(raw, unsubscribe_to=UNSUB, now=NOW)
    for f in parsed.findings:
        assert f.kind in {"hard_bounce", "soft_bounce", "complaint", "unsubscribed"}
        if f.address is not None:
            assert _ADDRESS_SHAPE.fullmatch(f.address), f.address
            assert f.address.encode() in raw.lower()


def test_a_members_reply_that_mentions_an_error_is_not_a_bounce() -> None:
    raw = (
        "From: 山田 <yamada@example.jp>\nTo: shop@shop.example.co.jp\n"
        "Subject: Re: エラー\nReturn-Path: <yamada@example.jp>\n"
        "Content-Type: text/plain; charset=utf-8\n\n"
        "tanaka@example.jp は存在しませんと言われました (550 user unknown)。\n"
    ).encode()
    assert parse_message(raw, now=NOW).findings == ()
    bounce = raw.replace(b"Return-Path: <yamada@example.jp>", b"Return-Path: <>")
    bounce = bounce.replace("Re: エラー".encode(), "配信エラー".encode())
    bounce = bounce.replace("山田 <yamada@example.jp>".encode(), b"<notify@example.jp>")
    assert [(f.kind, f.address) for f in parse_message(bounce, now=NOW).findings] == [
        ("hard_bounce", "tanaka@example.jp")
    ]


# Addresses anyone would call valid, by construction (dot-atoms, an LDH domain): the DSN must
# name exactly this one. The expected value is the generated text itself, not a validator's.
_PLAIN_ADDRESS_RE = re.compile(
    r"[a-z0-9]{1,8}([._+-][a-z0-9]{1,8}){0,2}@[a-z0-9]{1,8}(-[a-z0-9]{1,8})?\.[a-z]{2,5}"
)
_PLAIN_ADDRESS = st.from_regex(_PLAIN_ADDRESS_RE, fullmatch=True)
# What any named address looks like, whatever the DSN held: one @, no space, control or
# bracket, a dotted domain.
_ADDRESS_SHAPE = re.compile(r"[^@\s<>()\[\],;:\\\"\x00-\x1f]+@[a-z0-9.-]+\.[a-z0-9-]+")


@settings(max_examples=150, deadline=None)
@given(
    recipient=st.one_of(_PLAIN_ADDRESS, st.text(max_size=80)),
    status=st.from_regex(r"[45]\.[0-9]{1,3}\.[0-9]{1,3}", fullmatch=True),
)
def test_a_dsn_names_its_recipient_or_nobody_and_its_status_decides_hard_or_soft(
    recipient: str, status: str
) -> None:
    raw = _dsn(recipient, status=status)
    parsed = parse_message(raw, now=NOW)
    named = {f.address for f in parsed.findings} - {None}
    if _PLAIN_ADDRESS_RE.fullmatch(recipient):
        assert named == {recipient}
        [finding] = [f for f in parsed.findings if f.address == recipient]
        # RFC 3463: class 4 is a persistent transient failure, class 5 a permanent one
        assert finding.kind == ("soft_bounce" if status.startswith("4") else "hard_bounce")
        assert finding.status == status
    for address in named:
        assert address is not None and _ADDRESS_SHAPE.fullmatch(address), address
        assert address.encode() in raw.lower()


_ID_PIECES = ["<", ">", "bcartnb.", "bcartnb", ".", "@", "x.jp", "c1", "7", " ", "\n", "<<", "é"]


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from(_ID_PIECES) | st.text(max_size=3), max_size=30))
def test_our_message_ids_are_found_in_any_text_as_the_id_s_own_shape_finds_them(
    pieces: list[str],
) -> None:
    """The search that skips ahead to "bcartnb." finds exactly the ids, in order, that the
    id's whole shape (an optional "<" first) finds at every character."""
    text = "".join(pieces)
    token = r"[A-Za-z0-9_-]{1,40}"
    shape = re.compile(rf"<?bcartnb\.({token})\.({token})@[^<>@\s]+>?", re.ASCII)
    assert [(r.campaign, r.member) for r in parse_message_id(text)] == shape.findall(text)
