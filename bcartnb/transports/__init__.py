"""Where a composed mail goes: an SMTP server, a Maildir outbox, or nowhere (a dry run).

The send loop never builds a transport itself; it is handed one (httpx's
``Client(transport=...)``), so the same loop sends for real, fills an outbox to review, or
only counts. Every transport has the same two levels:

* ``transport.send(...)`` for the simple case: one connection, opened on first use and
  reused for every later mail (one SMTP session for a whole campaign);
* ``transport.connect()`` for parallel sending: each call opens an independent
  :class:`Connection` that one thread owns.

A send never raises for what happens to one mail: it returns a :class:`SendResult` whose
:class:`Outcome` tells the journal what to do. ``UNCERTAIN`` exists because a connection
that drops after the message body went out may have delivered it; resending by default
would mail the member twice. Only failures of the connection itself (unreachable server,
TLS, login) raise :class:`~bcartnb.exceptions.TransportError`, naming host:port and never
the password.

The parts: :mod:`~bcartnb.transports.base` (the protocols and what a send says),
:mod:`~bcartnb.transports.smtp` (sessions and each mail's transaction),
:mod:`~bcartnb.transports.session` (connect, TLS, login), :mod:`~bcartnb.transports.wire`
(the bytes and replies made safe), :mod:`~bcartnb.transports.maildir` (the outbox and
:class:`StoredMail`), :mod:`~bcartnb.transports.dryrun`.
"""

from __future__ import annotations

import ssl

from bcartnb.settings import Settings, SmtpSettings
from bcartnb.transports.base import (
    BaseConnection,
    BaseTransport,
    Connection,
    Outcome,
    PollableConnection,
    SendResult,
    Transport,
)
from bcartnb.transports.dryrun import DryRunTransport
from bcartnb.transports.maildir import MaildirTransport, StoredMail, read_maildir
from bcartnb.transports.smtp import SmtpConnection, SmtpTransport

__all__ = [
    "BaseConnection",
    "BaseTransport",
    "Connection",
    "DryRunTransport",
    "MaildirTransport",
    "Outcome",
    "PollableConnection",
    "SendResult",
    "SmtpConnection",
    "SmtpTransport",
    "StoredMail",
    "Transport",
    "read_maildir",
    "transport_from_settings",
]


def transport_from_settings(
    settings: Settings | SmtpSettings, *, ssl_context: ssl.SSLContext | None = None
) -> SmtpTransport:
    """The shop's SMTP server as configured (file + environment); nothing connects yet."""
    smtp = settings.smtp if isinstance(settings, Settings) else settings
    return SmtpTransport(smtp, ssl_context=ssl_context)
