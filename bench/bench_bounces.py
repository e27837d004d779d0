"""``bcartnb bounces scan`` of a Maildir of DSNs and ARF reports against a flufl.bounce loop.

Issue 24's target: the whole ``bcartnb bounces scan MAILDIR --json`` process within 1.1x of
a process that runs the plain flufl.bounce loop over the same Maildir (each file parsed with
``email.message_from_bytes`` and given to ``flufl.bounce.scan_message``), in CPU seconds
(user + sys, the scan's forked reader included: on a shared machine wall time says more about
the neighbours; the wall ratio is printed beside it), and the scan path importing no pandas.
The reading alone is compared in this process too, on the first 3,000 notices.

The mailbox holds ``--messages`` generated notices in the shapes of the samples in
tests/data/bounces: Postfix DSNs for unknown users (5.1.1, 60%), delay warnings
(4.2.2, 20%) and Yahoo-style ARF complaints (20%), each quoting the Message-ID bcartnb gives
a campaign mail. Before timing, the shop's ledger sends that campaign to every notice's
member for real into a Maildir outbox (``campaign.send`` with ``MaildirTransport``: the
claims, the journal, the Message-IDs); each scan starts from a copy of that ledger, so
every notice is read, tied to its mail and recorded (hard bounces and complaints listed,
delays counted) in each run alike. Both processes alternate, the order reversed each round;
medians of ``--runs``, each with its own peak RSS.

    .venv/bin/python bench/bench_bounces.py [--messages 10000] [--runs 3]
"""

from __future__ import annotations

import argparse
import email
import json
import mailbox
import os
import re
import shutil
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from flufl.bounce import scan_message
from scale import PY, Run, alternate, median, run_process

from bcartnb.campaign import CampaignSpec, plan_campaign, send
from bcartnb.hygiene.bounces import parse_message, unsubscribe_pattern
from bcartnb.settings import load_settings
from bcartnb.transports import MaildirTransport, read_maildir

SHOP = "shop.example.co.jp"
FLUFL = """\
import email, mailbox, sys
from flufl.bounce import scan_message
box = mailbox.Maildir(sys.argv[1], factory=None, create=False)
found = 0
for key in box.iterkeys():
    found += len(scan_message(email.message_from_bytes(box.get_bytes(key))))
print(found)
"""
CONFIG = f"""\
plan = "自社SMTP"
from = "見本商事 <shop@{SHOP}>"
admin = "admin@{SHOP}"
db = "ledger.sqlite3"
unsubscribe_mailto = "mailto:unsubscribe@{SHOP}"
"""
TARGET_RATIO = 1.1

DSN = """\
Return-Path: <>
Delivered-To: shop@{shop}
Date: Sun, 29 Nov 2026 10:{mm:02d}:{ss:02d} +0900 (JST)
From: MAILER-DAEMON@mail.{shop} (Mail Delivery System)
Subject: {subject}
To: shop@{shop}
Auto-Submitted: auto-replied
MIME-Version: 1.0
Content-Type: multipart/report; report-type=delivery-status;
\tboundary="B{i}/mail.{shop}"
Content-Transfer-Encoding: 8bit
Message-Id: <20261129{i:08d}.Q{i}@mail.{shop}>

This is a MIME-encapsulated message.

--B{i}/mail.{shop}
Content-Description: Notification
Content-Type: text/plain; charset=us-ascii

This is the mail system at host mail.{shop}.

{why}

<{rcpt}>: host mx.{domain}[192.0.2.25] said: {code} {status}
    <{rcpt}>: Recipient address rejected (in reply to RCPT TO command)

--B{i}/mail.{shop}
Content-Description: Delivery report
Content-Type: message/delivery-status

Reporting-MTA: dns; mail.{shop}
X-Postfix-Queue-ID: Q{i}
X-Postfix-Sender: rfc822; shop@{shop}
Arrival-Date: Sun, 29 Nov 2026 10:00:03 +0900 (JST)

Final-Recipient: rfc822; {rcpt}
Original-Recipient: rfc822;{rcpt}
Action: {action}
Status: {status}
Remote-MTA: dns; mx.{domain}
Diagnostic-Code: smtp; {code} {status} <{rcpt}>: Recipient address rejected

--B{i}/mail.{shop}
Content-Description: Undelivered Message Headers
Content-Type: text/rfc822-headers
Content-Transfer-Encoding: 8bit

Return-Path: <shop@{shop}>
From: =?utf-8?b?6KaL5pys5ZWG5LqL?= <shop@{shop}>
To: {rcpt}
Subject: =?utf-8?b?MTLmnIjjga7mlrDllYblk4E=?=
Date: Sun, 29 Nov 2026 10:00:02 +0900
Message-ID: <bcartnb.{campaign}.{member}>
MIME-Version: 1.0

--B{i}/mail.{shop}--
"""

ARF = """\
Return-Path: <feedback@arf.mail.yahoo.com>
Delivered-To: fbl@{shop}
From: Yahoo! Mail AntiSpam Feedback <feedback@arf.mail.yahoo.com>
To: fbl@{shop}
Subject: FW: December news
Date: Mon, 30 Nov 2026 03:{mm:02d}:{ss:02d} +0000
Message-ID: <arf-{i}@arf.mail.yahoo.com>
MIME-Version: 1.0
Content-Type: multipart/report; report-type=feedback-report;
\tboundary="----=_Part_{i}"

------=_Part_{i}
Content-Type: text/plain; charset=us-ascii
Content-Transfer-Encoding: 7bit

This is an email abuse report for an email message from {shop}

------=_Part_{i}
Content-Type: message/feedback-report

Feedback-Type: abuse
User-Agent: Yahoo!-Mail-Feedback/2.0
Version: 1
Original-Mail-From: <shop@{shop}>
Original-Rcpt-To: <{rcpt}>
Arrival-Date: Mon, 30 Nov 2026 02:59:00 +0000
Reported-Domain: {shop}

------=_Part_{i}
Content-Type: message/rfc822

From: shop@{shop}
To: {rcpt}
Subject: December news
Date: Mon, 30 Nov 2026 11:58:59 +0900
Message-ID: <bcartnb.{campaign}.{member}>

December news

------=_Part_{i}--
"""


DOMAINS = ("example.jp", "example.ne.jp", "example.com", "example.co.jp")


def address(i: int) -> str:
    return f"member{1001 + i}@{DOMAINS[i % 4]}"


def sent_ledger(shop: Path, n: int) -> tuple[Path, str, str]:
    """A ledger that sent one campaign to the n members; its copy, campaign id and the
    domain of its Message-IDs (as the mails carry them)."""
    members = shop / "members.csv"
    members.write_text(
        "会員ID,会社名,メールアドレス,メール案内\n"
        + "".join(f"{1001 + i},商事{i},{address(i)},受け取る\n" for i in range(n)),
        encoding="utf-8",
    )
    settings = load_settings(shop / "bcartnb.toml", env={})
    spec = CampaignSpec.from_mapping(
        {"members": str(members), "subject": "お知らせ", "body": "{{ 会社名 }} 様\n本文"}
    )
    outbox = shop / "outbox"
    outbox_transport = MaildirTransport(outbox, fsync=False)
    done = send(plan_campaign(spec, settings), transport=outbox_transport, progress=False)
    assert done.exit_code == 0 and done.sent == n, done
    ours = f"<bcartnb.{done.campaign_id}."  # the admin copy's differs
    msgid = next(
        str(m.message["Message-ID"])
        for m in read_maildir(outbox)
        if str(m.message["Message-ID"]).startswith(ours)
    ).strip("<>")
    shutil.rmtree(outbox)
    copy = shop / "sent.sqlite3.copy"
    shutil.copyfile(shop / "ledger.sqlite3", copy)
    for stale in shop.glob("ledger.sqlite3*"):
        stale.unlink()
    return copy, done.campaign_id, msgid.rsplit("@", 1)[1]


def notice(i: int, campaign: str, msgid_domain: str) -> bytes:
    """The i-th notice: 3 in 5 hard bounces, 1 in 5 delays, 1 in 5 complaints."""
    fields = {
        "i": i,
        "mm": i // 60 % 60,
        "ss": i % 60,
        "shop": SHOP,
        "campaign": campaign,
        "member": f"{1001 + i}@{msgid_domain}",
        "domain": DOMAINS[i % 4],
        "rcpt": address(i),
    }
    kind = i % 5
    if kind == 4:
        return ARF.format(**fields).encode()
    hard = kind < 3
    return DSN.format(
        **fields,
        subject="Undelivered Mail Returned to Sender"
        if hard
        else "Delayed Mail (still being retried)",
        why="Your message could not be delivered." if hard else "Your message is delayed.",
        action="failed" if hard else "delayed",
        status="5.1.1" if hard else "4.2.2",
        code="550" if hard else "452",
    ).encode()


def read_alone(maildir: str, n: int) -> dict[str, Any]:
    """The reading alone, in this process, on the same ``n`` notices: the flufl.bounce loop
    (``scan_message(email.message_from_bytes(raw))``) against ``parse_message``, each the
    least CPU of 3 rounds (no process start, no Maildir, no ledger)."""
    box = mailbox.Maildir(maildir, factory=None, create=False)
    raws = [box.get_bytes(key) for key in sorted(box.iterkeys())[:n]]
    pattern = unsubscribe_pattern(f"mailto:unsubscribe@{SHOP}")
    now = datetime.now(UTC)

    def loop() -> None:
        for raw in raws:
            scan_message(email.message_from_bytes(raw))

    def ours() -> None:
        for raw in raws:
            parse_message(raw, unsubscribe_to=pattern, now=now)

    out: dict[str, Any] = {"raws": raws}
    for name, run in (("flufl", loop), ("bcartnb", ours)) * 3:
        re.purge()  # each boundary compiled afresh, as in a process of its own
        t0 = time.process_time()
        run()
        spent = time.process_time() - t0
        out[name] = min(out.get(name, spent), spent)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=10_000)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args(argv)
    n = args.messages
    with tempfile.TemporaryDirectory() as tmp:
        shop = Path(tmp) / "shop"
        shop.mkdir()
        (shop / "bcartnb.toml").write_text(CONFIG, encoding="utf-8")
        env = {"BCARTNB_CONFIG": str(shop / "bcartnb.toml")}
        sent, campaign, msgid_domain = sent_ledger(shop, n)
        box = mailbox.Maildir(Path(tmp) / "bounces", create=True)
        for i in range(n):
            box.add(notice(i, campaign, msgid_domain))
        box.close()
        maildir = str(Path(tmp) / "bounces")
        scan = [PY, "-m", "bcartnb", "bounces", "scan", maildir, "--json"]

        def bcartnb(cmd: list[str] = scan) -> Run:
            for stale in shop.glob("ledger.sqlite3*"):  # the sent ledger afresh each run
                stale.unlink()
            shutil.copyfile(sent, shop / "ledger.sqlite3")
            return run_process(cmd, env=env, cwd=shop)

        got = alternate(
            {"bcartnb": bcartnb, "flufl": lambda: run_process([PY, "-c", FLUFL, maildir])},
            args.runs,
        )
        result = json.loads(got["bcartnb"][0].out)
        assert result["scanned"] == n and result["unmatched"] == 0, result  # each tied to its mail
        flufl_found = int(got["flufl"][0].out)
        reading = read_alone(maildir, 3000)
        imports = bcartnb([PY, "-X", "importtime", *scan[1:]])
        pandas = "pandas" in {
            line.split("|")[-1].strip().split(".")[0] for line in imports.err.splitlines()
        }
    for name, runs in got.items():
        each = ", ".join(f"{r.wall:.2f} s (CPU {r.cpu:.2f})" for r in runs)
        print(f"{name}: {each}")
    wall = {k: median([r.wall for r in v]) for k, v in got.items()}
    cpu = {k: median([r.cpu for r in v]) for k, v in got.items()}
    rss = {k: median([r.rss_mb for r in v]) for k, v in got.items()}
    ratio = cpu["bcartnb"] / cpu["flufl"]
    found = sum(result[k] for k in ("hard", "soft", "complaints")) + result["unmatched"]
    print()
    print(f"{n:,} notices; bcartnb: {json.dumps(result, ensure_ascii=False)}")
    print(f"flufl.bounce named {flufl_found:,} addresses; bcartnb's findings: {found:,}")
    print()
    print("| what | bcartnb bounces scan | flufl.bounce loop | ratio |")
    print("|---|---:|---:|---:|")
    w, f = wall["bcartnb"], wall["flufl"]
    print(f"| wall s, {n:,} notices | {w:.2f} | {f:.2f} | {w / f:.2f}x |")
    b, f = cpu["bcartnb"], cpu["flufl"]
    print(f"| CPU s (user+sys, children included) | {b:.2f} | {f:.2f} | {ratio:.2f}x |")
    print(f"| peak RSS MB | {rss['bcartnb']:,.0f} | {rss['flufl']:,.0f} | |")
    print(f"| pandas imported | {'yes' if pandas else 'no'} | no | |")
    ok = ratio <= TARGET_RATIO and not pandas
    print()
    print(
        f"reading alone, one process, {len(reading['raws']):,} notices, min of 3 CPU s: "
        f"flufl.bounce loop {reading['flufl']:.3f}, bcartnb's reading {reading['bcartnb']:.3f}, "
        f"ratio {reading['bcartnb'] / reading['flufl']:.2f}x"
    )
    print(f"load average at the end: {' '.join(f'{x:.1f}' for x in os.getloadavg())}")
    print()
    print(f"target: CPU <= {TARGET_RATIO}x the loop's, no pandas:", "met" if ok else "NOT met")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
