"""The ledger's tables and their migrations: append a step, never edit one.

``MIGRATIONS[i]`` upgrades a ledger from schema version ``i`` to ``i + 1`` inside one
``BEGIN IMMEDIATE`` transaction (all or nothing), with foreign keys off, so a step may
rebuild a table the way SQLite asks (create the new one, copy, drop, rename).
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
from collections.abc import Callable, Mapping
from typing import Any

__all__ = [
    "APPLICATION_ID",
    "CAMPAIGN_STATUSES",
    "DELIVERY_STATES",
    "MIGRATIONS",
    "SCHEDULE_STATUSES",
    "SCHEMA_VERSION",
    "SUPPRESSION_REASONS",
    "TRACK_KINDS",
    "Migration",
    "legacy_mail_key",
]

#: ``PRAGMA application_id`` of a bcartnb ledger ("bcnb"): tells our file from any other SQLite.
APPLICATION_ID = 0x62636E62
#: A campaign's lifecycle (see :mod:`bcartnb.ledger.campaigns`).
CAMPAIGN_STATUSES = ("sending", "unfinished", "done", "cancelled")
#: A mail's states (see :mod:`bcartnb.ledger.journal`).
DELIVERY_STATES = (
    "pending",
    "sending",
    "sent",
    "failed",
    "deferred",
    "uncertain",
    "withheld",
    "cancelled",
)
_V4_STATES = ("pending", "sending", "sent", "failed", "deferred", "uncertain", "withheld")
#: Why an address is on the suppression list (see :mod:`bcartnb.ledger.suppressions`).
SUPPRESSION_REASONS = ("hard_bounce", "soft_bounce", "unsubscribed", "complaint", "manual")
_V3_STATES = ("pending", "sending", "sent", "failed", "deferred", "uncertain")

#: One migration step: called inside the upgrade transaction with the connection.
Migration = Callable[[sqlite3.Connection], None]

_V1_STATUSES = ("planned", "sending", "interrupted", "done", "failed")
_V1_STATES = ("pending", "sending", "sent", "failed", "uncertain")

_V1 = (
    f"""CREATE TABLE campaigns (
        campaign_id TEXT PRIMARY KEY,
        created_at TEXT NOT NULL,
        user TEXT NOT NULL,
        host TEXT NOT NULL,
        plan TEXT NOT NULL,
        fingerprint TEXT NOT NULL,
        params TEXT NOT NULL,
        selected INTEGER NOT NULL DEFAULT 0,
        sendable INTEGER NOT NULL DEFAULT 0,
        unsendable INTEGER NOT NULL DEFAULT 0,
        reasons TEXT NOT NULL DEFAULT '{{}}',
        status TEXT NOT NULL DEFAULT 'planned' CHECK (status IN {_V1_STATUSES!r}),
        admin_copy TEXT CHECK (admin_copy IN ('sending', 'sent')),
        admin_copy_at TEXT,
        updated_at TEXT NOT NULL,
        finished_at TEXT
    )""",
    "CREATE INDEX campaigns_fingerprint ON campaigns (fingerprint)",
    f"""CREATE TABLE deliveries (
        campaign_id TEXT NOT NULL REFERENCES campaigns (campaign_id),
        member_id INTEGER NOT NULL,
        address TEXT NOT NULL,
        state TEXT NOT NULL DEFAULT 'pending' CHECK (state IN {_V1_STATES!r}),
        attempts INTEGER NOT NULL DEFAULT 0,
        counted_month TEXT,
        code INTEGER,
        message TEXT,
        sending_at TEXT,
        result_at TEXT,
        PRIMARY KEY (campaign_id, member_id)
    ) WITHOUT ROWID""",
    "CREATE INDEX deliveries_state ON deliveries (campaign_id, state)",
    """CREATE TABLE usage (
        month TEXT NOT NULL,
        campaign_id TEXT NOT NULL,
        sends INTEGER NOT NULL,
        PRIMARY KEY (month, campaign_id)
    ) WITHOUT ROWID""",
    """CREATE TABLE reservations (
        campaign_id TEXT PRIMARY KEY REFERENCES campaigns (campaign_id),
        month TEXT NOT NULL,
        plan TEXT NOT NULL,
        held INTEGER NOT NULL CHECK (held >= 0),
        pid INTEGER NOT NULL,
        host TEXT NOT NULL,
        proc_start TEXT NOT NULL,
        lease_until REAL NOT NULL,
        heartbeat_at TEXT NOT NULL
    )""",
    """CREATE TABLE sends (
        id INTEGER PRIMARY KEY,
        kind TEXT NOT NULL CHECK (kind IN ('test', 'admin')),
        campaign_id TEXT REFERENCES campaigns (campaign_id),
        address TEXT NOT NULL,
        at TEXT NOT NULL,
        code INTEGER,
        message TEXT
    )""",
)


def _migrate_0_to_1(conn: sqlite3.Connection) -> None:
    """The first schema."""
    for stmt in _V1:
        conn.execute(stmt)


def _migrate_1_to_2(conn: sqlite3.Connection) -> None:
    """Drop the (campaign_id, state) index: the send loop's commits write a third fewer pages.

    Every hand-over and every result moves a row between states, and the index moved with
    it, three more pages in each commit. The reads it served scan one campaign's rows by the
    primary key instead (a few milliseconds for 50,000); only listing every campaign's counts
    over a million deliveries got slower (0.07 s to 0.4 s).
    """
    conn.execute("DROP INDEX IF EXISTS deliveries_state")


def _migrate_2_to_3(conn: sqlite3.Connection) -> None:
    """One lifecycle: ``deferred`` mails, campaigns ``sending | unfinished | done | cancelled``.

    Version 2 let two unfinished campaigns share a fingerprint (an outage, then two runs,
    then two resumes mailed everyone twice) and treated a 4xx as final after a few tries.
    Now a partial unique index allows at most one unfinished campaign per fingerprint, a
    4xx leaves the mail ``deferred``, and each hand-over remembers the state it came from
    (``handed_from``), so a transaction that never started goes back exactly there.

    Old statuses: whatever it was, a campaign becomes ``unfinished`` when mails are left to
    send (pending or uncertain) and some mail was handed over, ``cancelled`` when mails are
    left but none was ever handed over, ``done`` otherwise. Of several unfinished campaigns with one
    fingerprint only the newest stays unfinished; the older are cancelled (their mails
    left would go to the same members as the newest's). Rows left ``sending`` by a version
    2 run become ``uncertain``.
    """
    # SQLite's way to change a CHECK: new tables, copy, drop the old, rename the new (renaming
    # the old ones instead would rewrite the other tables' foreign keys to follow them)
    conn.execute(
        f"""CREATE TABLE campaigns_v3 (
        campaign_id TEXT PRIMARY KEY,
        created_at TEXT NOT NULL,
        user TEXT NOT NULL,
        host TEXT NOT NULL,
        plan TEXT NOT NULL,
        fingerprint TEXT NOT NULL,
        params TEXT NOT NULL,
        selected INTEGER NOT NULL DEFAULT 0,
        sendable INTEGER NOT NULL DEFAULT 0,
        unsendable INTEGER NOT NULL DEFAULT 0,
        reasons TEXT NOT NULL DEFAULT '{{}}',
        status TEXT NOT NULL CHECK (status IN {CAMPAIGN_STATUSES!r}),
        admin_copy TEXT CHECK (admin_copy IN ('sending', 'sent')),
        admin_copy_at TEXT,
        updated_at TEXT NOT NULL,
        finished_at TEXT
    )"""
    )
    conn.execute(
        f"""CREATE TABLE deliveries_v3 (
        campaign_id TEXT NOT NULL REFERENCES campaigns (campaign_id),
        member_id INTEGER NOT NULL,
        address TEXT NOT NULL,
        state TEXT NOT NULL DEFAULT 'pending' CHECK (state IN {_V3_STATES!r}),
        handed_from TEXT,
        attempts INTEGER NOT NULL DEFAULT 0,
        counted_month TEXT,
        code INTEGER,
        message TEXT,
        sending_at TEXT,
        result_at TEXT,
        PRIMARY KEY (campaign_id, member_id)
    ) WITHOUT ROWID"""
    )
    conn.execute(
        "INSERT INTO deliveries_v3 (campaign_id, member_id, address, state, attempts, "
        "counted_month, code, message, sending_at, result_at) "
        "SELECT campaign_id, member_id, address, "
        "CASE state WHEN 'sending' THEN 'uncertain' ELSE state END, attempts, "
        "counted_month, code, message, sending_at, result_at FROM deliveries"
    )
    conn.execute(
        "INSERT INTO campaigns_v3 SELECT campaign_id, created_at, user, host, plan, fingerprint, "
        "params, selected, sendable, unsendable, reasons, "
        "CASE WHEN EXISTS (SELECT 1 FROM deliveries_v3 d WHERE d.campaign_id = c.campaign_id "
        "  AND d.state IN ('pending', 'uncertain')) THEN "
        "  CASE WHEN EXISTS (SELECT 1 FROM deliveries_v3 d WHERE d.campaign_id = c.campaign_id "
        "    AND d.attempts > 0) THEN 'unfinished' ELSE 'cancelled' END "
        "ELSE 'done' END, "
        "admin_copy, admin_copy_at, updated_at, finished_at FROM campaigns c"
    )
    conn.execute(
        "UPDATE campaigns_v3 SET status = 'cancelled' WHERE status = 'unfinished' AND EXISTS ("
        "SELECT 1 FROM campaigns_v3 newer WHERE newer.fingerprint = campaigns_v3.fingerprint "
        "AND newer.status = 'unfinished' AND (newer.created_at, newer.campaign_id) > "
        "(campaigns_v3.created_at, campaigns_v3.campaign_id))"
    )
    conn.execute("DROP TABLE deliveries")
    conn.execute("DROP TABLE campaigns")
    conn.execute("ALTER TABLE campaigns_v3 RENAME TO campaigns")
    conn.execute("ALTER TABLE deliveries_v3 RENAME TO deliveries")
    conn.execute("CREATE INDEX campaigns_fingerprint ON campaigns (fingerprint)")
    conn.execute(
        "CREATE UNIQUE INDEX campaigns_one_open_per_fingerprint ON campaigns (fingerprint) "
        "WHERE status IN ('sending', 'unfinished')"
    )
    conn.execute("DELETE FROM reservations")  # held by version 2 runs: their rows are uncertain


def _migrate_3_to_4(conn: sqlite3.Connection) -> None:
    """List hygiene: the suppression list, the events it is built from, and ``withheld`` mails.

    ``suppressions`` holds one row per address (lower-cased: addresses compare ignoring case)
    that must not be mailed, with why and since when. ``hygiene_events`` keeps every bounce,
    unsubscribe and complaint seen, keyed by where it came from (a bounce's Message-ID, a
    token), so reading the same mailbox twice changes nothing, and soft bounces can be
    counted over a window. ``bcart_pushes`` records each change written back to B-Cart, so
    a second push sends nothing again. A mail whose address was suppressed after its
    campaign began is ``withheld``: final, never sent (SQLite changes a CHECK by rebuilding).
    """
    conn.execute(
        f"""CREATE TABLE deliveries_v4 (
        campaign_id TEXT NOT NULL REFERENCES campaigns (campaign_id),
        member_id INTEGER NOT NULL,
        address TEXT NOT NULL,
        state TEXT NOT NULL DEFAULT 'pending' CHECK (state IN {_V4_STATES!r}),
        handed_from TEXT,
        attempts INTEGER NOT NULL DEFAULT 0,
        counted_month TEXT,
        code INTEGER,
        message TEXT,
        sending_at TEXT,
        result_at TEXT,
        PRIMARY KEY (campaign_id, member_id)
    ) WITHOUT ROWID"""
    )
    conn.execute("INSERT INTO deliveries_v4 SELECT * FROM deliveries")
    conn.execute("DROP TABLE deliveries")
    conn.execute("ALTER TABLE deliveries_v4 RENAME TO deliveries")
    conn.execute(
        f"""CREATE TABLE suppressions (
        address TEXT PRIMARY KEY,
        reason TEXT NOT NULL CHECK (reason IN {SUPPRESSION_REASONS!r}),
        source TEXT NOT NULL,
        first_seen TEXT NOT NULL,
        last_seen TEXT NOT NULL,
        count INTEGER NOT NULL DEFAULT 1 CHECK (count >= 1),
        campaign_id TEXT,
        member_id INTEGER,
        detail TEXT
    ) WITHOUT ROWID"""
    )
    conn.execute(
        f"""CREATE TABLE hygiene_events (
        event_key TEXT PRIMARY KEY,
        kind TEXT NOT NULL CHECK (kind IN {SUPPRESSION_REASONS!r}),
        address TEXT NOT NULL,
        at TEXT NOT NULL,
        recorded_at TEXT NOT NULL,
        source TEXT NOT NULL,
        campaign_id TEXT,
        member_id INTEGER,
        status TEXT,
        detail TEXT,
        cleared INTEGER NOT NULL DEFAULT 0
    ) WITHOUT ROWID"""
    )
    conn.execute("CREATE INDEX hygiene_events_address ON hygiene_events (address, kind, at)")
    conn.execute(
        """CREATE TABLE bcart_pushes (
        member_id INTEGER NOT NULL,
        field TEXT NOT NULL,
        value INTEGER NOT NULL,
        address TEXT NOT NULL,
        pushed_at TEXT NOT NULL,
        PRIMARY KEY (member_id, field)
    ) WITHOUT ROWID"""
    )


#: The keys of a version-4 campaign's parameters that made the mail itself (not its members).
_LEGACY_MAIL_KEYS = ("template", "subject", "body", "html", "insert_signature", "encoding")


def legacy_mail_key(params: Mapping[str, Any]) -> str:
    """The identity a campaign recorded before version 5 can be given: its mail's parameters.

    A version-4 campaign recorded the template's *name*, not its text, so its mail cannot be
    hashed as written. Its mail parameters (the template name and any subject, body and flags
    given with it, never the member file or the filter) stand in: the same newsletter run
    again from a re-exported file after the upgrade is still recognised as already sent.
    Frozen with this migration; new campaigns are keyed by their content.
    """
    mail = {k: params.get(k) for k in _LEGACY_MAIL_KEYS}
    text = json.dumps(mail, sort_keys=True, ensure_ascii=False, default=str)
    return "legacy:" + hashlib.sha256(text.encode()).hexdigest()


def _migrate_4_to_5(conn: sqlite3.Connection) -> None:
    """One shop, one truth: a mail's identity is its content, claimed per address.

    ``mail_claims`` holds, for each mail (``mail_key``: a hash of what the member receives,
    as written before member values are merged in) and each lower-cased address, the one
    campaign that mailed it or is mailing it: the primary key is what makes "each address
    gets a given mail at most once" hold across campaigns, re-exported files and concurrent
    runs. ``campaigns.mail_key`` and ``campaigns.mail`` (the frozen mail, JSON) let a resume
    send what its campaign started with. A mail the marketer ends is ``cancelled``.

    Existing campaigns get :func:`legacy_mail_key` and claims for the mails they handed
    over or still hold (newest campaign first); withheld mails, and those of a campaign
    cancelled before sending, claim nothing.
    """
    conn.execute(
        f"""CREATE TABLE deliveries_v5 (
        campaign_id TEXT NOT NULL REFERENCES campaigns (campaign_id),
        member_id INTEGER NOT NULL,
        address TEXT NOT NULL,
        state TEXT NOT NULL DEFAULT 'pending' CHECK (state IN {DELIVERY_STATES!r}),
        handed_from TEXT,
        attempts INTEGER NOT NULL DEFAULT 0,
        counted_month TEXT,
        code INTEGER,
        message TEXT,
        sending_at TEXT,
        result_at TEXT,
        PRIMARY KEY (campaign_id, member_id)
    ) WITHOUT ROWID"""
    )
    conn.execute("INSERT INTO deliveries_v5 SELECT * FROM deliveries")
    conn.execute("DROP TABLE deliveries")
    conn.execute("ALTER TABLE deliveries_v5 RENAME TO deliveries")
    conn.execute("ALTER TABLE campaigns ADD COLUMN mail_key TEXT")
    conn.execute("ALTER TABLE campaigns ADD COLUMN mail TEXT")
    conn.execute(
        """CREATE TABLE mail_claims (
        mail_key TEXT NOT NULL,
        address TEXT NOT NULL,
        campaign_id TEXT NOT NULL REFERENCES campaigns (campaign_id),
        member_id INTEGER NOT NULL,
        PRIMARY KEY (mail_key, address)
    ) WITHOUT ROWID"""
    )
    conn.execute("CREATE INDEX mail_claims_campaign ON mail_claims (campaign_id)")
    rows = conn.execute(
        "SELECT campaign_id, params, status FROM campaigns "
        "ORDER BY created_at DESC, campaign_id DESC"
    ).fetchall()
    for cid, params, status in rows:
        key = legacy_mail_key(json.loads(params))
        conn.execute("UPDATE campaigns SET mail_key = ? WHERE campaign_id = ?", (key, cid))
        conn.execute(
            "INSERT OR IGNORE INTO mail_claims (mail_key, address, campaign_id, member_id) "
            "SELECT ?, lower(trim(address)), campaign_id, member_id FROM deliveries "
            "WHERE campaign_id = ? AND state != 'withheld' AND (attempts > 0 OR ? != 'cancelled')",
            (key, cid, status),
        )


#: A scheduled campaign's states (予約配信, see :mod:`bcartnb.ledger.schedules`).
SCHEDULE_STATUSES = ("scheduled", "sending", "sent", "cancelled", "refused", "expired")


def _migrate_schedules(conn: sqlite3.Connection) -> None:
    """予約配信: scheduled campaigns, each sent once by ``bcartnb due`` at its time.

    ``scheduled`` holds, per scheduled campaign, its time (``send_at``, UTC ISO 8601, so
    they sort and compare as text), the quota month of that time (Asia/Tokyo), the frozen
    mail (what the member receives, JSON), the audience rule (the campaign's keys: members
    file, filter or segment, ticked ids; resolved when it is sent), the count projected when
    it was scheduled, its status, who claimed it (pid, host, process start: a ``due`` that
    died can be told from one still sending) and what became of it (campaign id, exit code,
    the one-line result). Self-contained: it touches no other table.
    """
    conn.execute(
        f"""CREATE TABLE scheduled (
        schedule_id TEXT PRIMARY KEY,
        created_at TEXT NOT NULL,
        send_at TEXT NOT NULL,
        month TEXT NOT NULL,
        plan TEXT NOT NULL,
        params TEXT NOT NULL,
        mail TEXT NOT NULL,
        projected INTEGER NOT NULL CHECK (projected >= 0),
        status TEXT NOT NULL DEFAULT 'scheduled' CHECK (status IN {SCHEDULE_STATUSES!r}),
        claimed_pid INTEGER,
        claimed_host TEXT,
        claimed_start TEXT,
        claimed_at TEXT,
        campaign_id TEXT,
        exit_code INTEGER,
        result TEXT,
        finished_at TEXT
    ) WITHOUT ROWID"""
    )
    conn.execute("CREATE INDEX scheduled_due ON scheduled (status, send_at)")


#: What a tracking event measured: the open image, or a tracked link.
TRACK_KINDS = ("open", "click")


def _add_tracking(conn: sqlite3.Connection) -> None:
    """Click and open measurement (:mod:`bcartnb.ledger.tracking`).

    ``tracked_links`` is each campaign's link table, frozen when it is first sent: the only
    place the public server takes a redirect's target from. ``tracking_events`` counts, per
    campaign, member, link (0: the open image), kind and whether a machine did it, the first
    and last time and how often: one row however often a link is clicked, and no address of
    the requester (no IP, no User-Agent) is kept.
    """
    conn.execute(
        """CREATE TABLE tracked_links (
        campaign_id TEXT NOT NULL REFERENCES campaigns (campaign_id),
        number INTEGER NOT NULL CHECK (number > 0),
        url TEXT NOT NULL,
        PRIMARY KEY (campaign_id, number)
    ) WITHOUT ROWID"""
    )
    conn.execute(
        f"""CREATE TABLE tracking_events (
        campaign_id TEXT NOT NULL,
        member_id INTEGER NOT NULL,
        link INTEGER NOT NULL CHECK (link >= 0),
        kind TEXT NOT NULL CHECK (kind IN {TRACK_KINDS!r}),
        machine INTEGER NOT NULL CHECK (machine IN (0, 1)),
        first_at TEXT NOT NULL,
        last_at TEXT NOT NULL,
        count INTEGER NOT NULL CHECK (count > 0),
        PRIMARY KEY (campaign_id, member_id, link, kind, machine)
    ) WITHOUT ROWID"""
    )


MIGRATIONS: tuple[Migration, ...] = (
    _migrate_0_to_1,
    _migrate_1_to_2,
    _migrate_2_to_3,
    _migrate_3_to_4,
    _migrate_4_to_5,
    _migrate_schedules,
    _add_tracking,
)
SCHEMA_VERSION = len(MIGRATIONS)
