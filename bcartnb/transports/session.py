"""Opening an SMTP session: connect, TLS, EHLO and AUTH, each failure named for the marketer.

This is where a wrong host, port, security mode or password shows, so each step that can
fail says which it was, in Japanese first, with the host:port and never the password (a
server may quote the AUTH exchange in its reply: it is scrubbed). smtplib does the work:
these steps are rare and delicate, and well served by the standard library.
"""

from __future__ import annotations

import smtplib
import ssl

from bcartnb.exceptions import TransportError
from bcartnb.privacy import scrub
from bcartnb.settings import SmtpSettings
from bcartnb.transports.wire import close_quietly, reply_or_str

__all__ = ["open_session"]


def open_session(s: SmtpSettings, ssl_context: ssl.SSLContext | None = None) -> smtplib.SMTP:
    """A connected, secured and logged-in smtplib session, or TransportError.

    ``ssl_context`` defaults to the system's verifying context, made only when TLS is used.
    """
    smtp: smtplib.SMTP | None = None
    stage = "cannot connect"
    stage_ja = (
        f"SMTPサーバー {s.address} に接続できません。"
        "ホスト名とポート番号、サーバーが動いているかを確認してください。"
    )
    try:
        if s.security == "ssl":
            smtp = smtplib.SMTP_SSL(
                s.host, s.port, timeout=s.timeout, context=_context(ssl_context)
            )
        else:
            smtp = smtplib.SMTP(s.host, s.port, timeout=s.timeout)
        smtp.ehlo_or_helo_if_needed()
        if s.security == "starttls":
            if not smtp.has_extn("starttls"):
                raise TransportError(
                    f"SMTP {s.address}: the server does not offer STARTTLS "
                    "(try security 'ssl' on port 465, or 'none' for a local relay)",
                    ja=f"SMTPサーバー {s.address} は STARTTLS に対応していません。"
                    "security を ssl（ポート465）に、社内の中継サーバーなら none に"
                    "してください。",
                )
            stage = "STARTTLS failed"
            stage_ja = (
                f"SMTPサーバー {s.address} で暗号化（STARTTLS）を始められません。"
                "security とポート番号を確認してください。"
            )
            smtp.starttls(context=_context(ssl_context))
            smtp.ehlo()
        if s.user:
            if not smtp.has_extn("auth"):
                hint = " before TLS (use starttls or ssl)" if s.security == "none" else ""
                raise TransportError(
                    f"SMTP {s.address}: the server does not offer AUTH{hint}",
                    ja=f"SMTPサーバー {s.address} はログイン（AUTH）を受け付けていません。"
                    + (
                        "暗号化の後で受け付けるサーバーなら security を starttls か ssl に"
                        "してください。"
                        if hint
                        else "user の設定を確認してください。"
                    ),
                )
            stage = f"login as {s.user!r} failed"
            stage_ja = (
                f"SMTPサーバー {s.address} に {s.user} でログインできません。"
                "ユーザー名とパスワード（BCARTNB_SMTP_PASSWORD）を確認してください。"
            )
            smtp.login(s.user, s.password or "")
    except TransportError:
        close_quietly(smtp)
        raise
    except ssl.SSLError as err:  # before OSError: SSLError is one
        close_quietly(smtp)
        raise TransportError(
            f"SMTP {s.address}: TLS failed: {reply_or_str(err)}",
            ja=f"SMTPサーバー {s.address} との暗号化（TLS）に失敗しました。"
            "security（starttls / ssl）とポート番号、サーバー証明書を確認してください。",
        ) from err
    except OSError as err:  # smtplib.SMTPException is an OSError too
        close_quietly(smtp)
        reply = scrub(reply_or_str(err), [s.password])  # a server may quote the AUTH
        raise TransportError(f"SMTP {s.address}: {stage}: {reply}", ja=stage_ja) from err
    return smtp


def _context(ssl_context: ssl.SSLContext | None) -> ssl.SSLContext:
    return ssl_context or ssl.create_default_context()
