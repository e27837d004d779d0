"""What crosses the wire to an SMTP server and back, made safe: the envelope, the data, the replies.

Every line the server reads ends in CRLF (a lone CR or LF is how a mail smuggles commands),
no envelope address carries a line break, and every reply the server sends is one printable
line of bounded length before it reaches the journal, a summary or a terminal. A reply's
code decides whether trying again can help (:func:`outcome_for`).
"""

from __future__ import annotations

import re
import smtplib
import ssl
from collections.abc import Sequence

from bcartnb.transports.base import Outcome

__all__ = [
    "LEADING_DOT",
    "check_envelope",
    "close_quietly",
    "needs_dots",
    "outcome_for",
    "reply_or_str",
    "reply_text",
    "wire_data",
]

_LINE_END = re.compile(rb"\r\n|\r|\n")
LEADING_DOT = re.compile(rb"(?m)^\.")


def wire_data(raw: bytes) -> bytes:
    """The message as SMTP needs it: every line ends in CRLF, a lone CR or LF included.

    A lone CR before a dot (``\\r.\\r\\n``) is the SMTP smuggling sequence: a server that
    takes it for the end of DATA reads what follows as commands, and no dot-stuffing sees a
    line start there. Counting first spares the substitution for the composer's bytes, which
    already end every line in CRLF.
    """
    crlf = raw.count(b"\r\n")
    if raw.count(b"\r") != crlf or raw.count(b"\n") != crlf:
        raw = _LINE_END.sub(b"\r\n", raw)
    return raw if raw.endswith(b"\r\n") else raw + b"\r\n"


def needs_dots(data: bytes) -> bool:
    """A line starting with a dot must be doubled (RFC 5321 4.5.2); most mails have none.

    Only for :func:`wire_data`'s output, where every line starts after a CRLF.
    """
    return data.startswith(b".") or b"\n." in data


#: A server's reply text past this is cut: it ends up in the journal, summaries and mail.
_REPLY_TEXT_MAX = 500


def reply_text(reply: bytes | str) -> str:
    """A server's reply as one printable line: a hostile or broken server's ESC sequences,
    NULs and bidi controls never reach a terminal, the report or the admin copy."""
    text = reply.decode("utf-8", "replace") if isinstance(reply, bytes) else reply
    # Splitting first spares the per-character pass for nearly every reply (4 a mail): a
    # reply's own CR LF are not printable, so a whole-string test before the split always
    # failed. Any other character left that is not printable (NUL, ESC, bidi) takes the pass.
    clean = " ".join(text.split())
    if not clean.isprintable():
        clean = " ".join("".join(c if c.isprintable() else " " for c in text).split())
    return clean if len(clean) <= _REPLY_TEXT_MAX else clean[: _REPLY_TEXT_MAX - 1] + "…"


def check_envelope(envelope_from: str, recipients: Sequence[str]) -> None:
    """A bug upstream, not a member's problem: addresses were validated long before here.

    A line break would let an address smuggle extra SMTP commands (or stored headers).
    """
    if not recipients:
        raise ValueError("send() needs at least one recipient")
    for value in (envelope_from, *recipients):
        if "\r" in value or "\n" in value:
            raise ValueError(f"line break in an envelope address: {value!r}")


def outcome_for(code: int) -> Outcome:
    return Outcome.PERMANENT if 500 <= code < 600 else Outcome.TEMPORARY


def reply_or_str(err: BaseException) -> str:
    if isinstance(err, smtplib.SMTPResponseException):
        return f"{err.smtp_code} {reply_text(err.smtp_error)}"
    if isinstance(err, ssl.SSLCertVerificationError):
        return f"certificate not trusted ({err.verify_message})"
    if isinstance(err, ssl.SSLError) and err.reason:
        return err.reason
    return " ".join(str(err).split()) or type(err).__name__


def close_quietly(smtp: smtplib.SMTP | None) -> None:
    if smtp is not None:
        smtp.close()
