"""How much connection reuse and parallel connections buy, against a real SMTP server.

The server runs in its own process (so it does not share our GIL): aiosmtpd through
``bcartnb.sink.SmtpServerThread``, either answering 250 without storing (to see the
transport's own cost) or the real sink writing every mail to a Maildir with fsync.
Baseline: a new SMTP session for every mail, which is what a naive loop does.

Run: .venv/bin/python bench/bench_transports.py [--mails N]
"""

from __future__ import annotations

import argparse
import ssl
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from email.message import EmailMessage
from email.policy import SMTP as SMTP_POLICY
from pathlib import Path

import trustme

from bcartnb.settings import SmtpSettings
from bcartnb.transports import (
    BaseTransport,
    DryRunTransport,
    MaildirTransport,
    SmtpTransport,
)

SERVER = r"""
import ssl, sys
from bcartnb.sink import Sink, SmtpServerThread

class Accept:
    async def handle_DATA(self, server, session, envelope):
        return "250 2.0.0 OK"

mode = sys.argv[1]
if mode == "sink":
    server = Sink(sys.argv[2], port=0)
else:
    kwargs = {}
    if mode == "starttls":
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ctx.load_cert_chain(sys.argv[2], sys.argv[3])
        kwargs = {"tls_context": ctx, "require_starttls": True}
    server = SmtpServerThread(Accept(), "127.0.0.1", 0, **kwargs)
with server:
    print(server.port, flush=True)
    sys.stdin.read()
"""


def message(i: int) -> bytes:
    msg = EmailMessage(policy=SMTP_POLICY)
    msg["From"] = "shop@example.com"
    msg["To"] = f"member{i}@example.jp"
    msg["Subject"] = "秋の新商品のご案内"
    msg.set_content(
        ("株式会社テスト 様\nいつもお引き立てありがとうございます。\n" * 40) + f"#{i}\n"
    )
    return msg.as_bytes()


def start_server(args: list[str]) -> tuple[subprocess.Popen[str], int]:
    proc = subprocess.Popen(
        [sys.executable, "-c", SERVER, *args],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    return proc, int(proc.stdout.readline())


def stop_server(proc: subprocess.Popen[str]) -> None:
    assert proc.stdin is not None
    proc.stdin.close()
    proc.wait(30)


def per_mail_session(transport: BaseTransport, mails: list[bytes]) -> None:
    for i, raw in enumerate(mails):
        with transport.connect() as conn:
            assert conn.send("shop@example.com", [f"member{i}@example.jp"], raw).sent


def one_session(transport: BaseTransport, mails: list[bytes]) -> None:
    with transport.connect() as conn:
        for i, raw in enumerate(mails):
            assert conn.send("shop@example.com", [f"member{i}@example.jp"], raw).sent


def parallel(k: int) -> Callable[[BaseTransport, list[bytes]], None]:
    def run(transport: BaseTransport, mails: list[bytes]) -> None:
        threads = [
            threading.Thread(target=one_session, args=(transport, mails[j::k])) for j in range(k)
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join()

    return run


def rate(
    run: Callable[[BaseTransport, list[bytes]], None],
    make: Callable[[], BaseTransport],
    mails: list[bytes],
) -> float:
    with make() as transport:
        start = time.perf_counter()
        run(transport, mails)
        return len(mails) / (time.perf_counter() - start)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--mails", type=int, default=1000)
    n = parser.parse_args().mails
    mails = [message(i) for i in range(n)]
    rows: list[tuple[str, str, float, float | None]] = []
    with tempfile.TemporaryDirectory() as tmp:
        ca = trustme.CA()
        cert = ca.issue_cert("127.0.0.1")
        cert_file, key_file = Path(tmp, "cert.pem"), Path(tmp, "key.pem")
        cert.cert_chain_pems[0].write_to_path(str(cert_file))
        cert.private_key_pem.write_to_path(str(key_file))
        client_ctx = ssl.create_default_context()
        ca.configure_trust(client_ctx)

        for mode, extra in (
            ("none", []),
            ("starttls", [str(cert_file), str(key_file)]),
            ("sink", [str(Path(tmp, "sink"))]),
        ):
            proc, port = start_server([mode, *extra])
            security = "starttls" if mode == "starttls" else "none"
            settings = SmtpSettings(host="127.0.0.1", port=port, security=security)

            def make(settings: SmtpSettings = settings) -> BaseTransport:
                return SmtpTransport(settings, ssl_context=client_ctx)

            try:
                base = rate(per_mail_session, make, mails)
                rows.append((mode, "new session per mail (baseline)", base, 1.0))
                for name, run in (
                    ("one session, reused", one_session),
                    ("4 sessions in parallel", parallel(4)),
                ):
                    r = rate(run, make, mails)
                    rows.append((mode, name, r, r / base))
            finally:
                stop_server(proc)

        for name, make_local in (
            ("Maildir outbox, fsync", lambda: MaildirTransport(Path(tmp, "out1"))),
            ("Maildir outbox, no fsync", lambda: MaildirTransport(Path(tmp, "out2"), fsync=False)),
            ("dry run", lambda: DryRunTransport()),
        ):
            rows.append(("local", name, rate(one_session, make_local, mails), None))

    print(f"{n} mails of {len(mails[0])} bytes; ratio = against a new session per mail")
    print("| server | how | mails/s | ratio |\n|---|---|---:|---:|")
    for server, how, r, ratio in rows:
        print(f"| {server} | {how} | {r:,.0f} | {f'{ratio:.1f}x' if ratio else '–'} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
