"""Scan a bounce mailbox into the suppression list: ``bcartnb bounces scan SOURCE``.

Each mail is read (:mod:`bcartnb.hygiene.bounces`), then each finding is tied to the mail of
ours it is about, or found unmatched or unverified (:mod:`bcartnb.hygiene.matching`). A
matched finding becomes one :class:`~bcartnb.ledger.HygieneEvent` keyed by that mail and its
kind, so any number of notices about one mail (three copies of a delay warning, a notice
re-read after a mail client marked it read) count once. An unverified one is recorded under
a key of what it says, listing nobody until ``bcartnb bounces confirm``; an unmatched one
changes nothing and is counted by its reason. Everything is recorded in one ledger
transaction: scanning the same mailbox again (or twice at once) records each event once.
"""

from __future__ import annotations

import hashlib
import os
import ssl
import sys
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import partial
from typing import Any

from bcartnb.hygiene.bounces import Finding, Parsed, parse_message, unsubscribe_pattern
from bcartnb.hygiene.matching import UNMATCHED_REASONS, Match, Matcher
from bcartnb.hygiene.readall import read_all
from bcartnb.hygiene.sources import open_mailbox
from bcartnb.ledger import HygieneEvent, Ledger
from bcartnb.ledger import using as ledger_using
from bcartnb.ledger.suppressions import REASON_LABELS, event_id
from bcartnb.mailtokens import VerpSigner
from bcartnb.privacy import mask_address
from bcartnb.quota import now_tokyo
from bcartnb.settings import HygieneSettings, Settings

__all__ = [
    "ConfirmResult",
    "PendingNotice",
    "ScanResult",
    "confirm_notices",
    "pending_notices",
    "scan_mailbox",
    "unverified_notices",
    "with_thresholds",
]

#: Event kind → the key of the scan's count (DESIGN's JSON contract).
_COUNT_KEYS: Mapping[str, str] = {
    "hard_bounce": "hard",
    "soft_bounce": "soft",
    "unsubscribed": "unsubscribes",
    "complaint": "complaints",
}


@dataclass(frozen=True)
class PendingNotice:
    """An unverified notice, as the screens show it: never the whole address."""

    id: str
    address: str  # masked
    kind: str
    status: str | None
    at: datetime
    member_id: int | None = None  # whose address it is, by the latest mail to it

    def as_dict(self) -> dict[str, Any]:
        """JSON: ``id``, ``address`` (masked), ``member_id``, ``kind``, ``status``, ``at``."""
        return {
            "id": self.id,
            "address": self.address,
            "member_id": self.member_id,
            "kind": self.kind,
            "status": self.status,
            "at": self.at.isoformat(),
        }

    @property
    def label(self) -> str:
        """What the notice says, in Japanese."""
        return REASON_LABELS[self.kind]

    def line(self) -> str:
        """One line: id, masked address and member, what it says."""
        status = f" {self.status}" if self.status else ""
        whose = f"（会員ID {self.member_id}）" if self.member_id is not None else ""
        return f"  {self.id}  {self.address}{whose}  {self.label}{status}"


def pending_notices(rows: Iterable[Mapping[str, Any]]) -> list[PendingNotice]:
    """The ledger's unverified events (:meth:`~bcartnb.ledger.Ledger.unverified_events`), masked."""
    return [
        PendingNotice(
            event_id(str(r["event_key"])),
            mask_address(str(r["address"])),
            str(r["kind"]),
            r["status"],
            r["at"],
            r["member_id"],
        )
        for r in rows
    ]


@dataclass(frozen=True)
class ScanResult:
    """What a scan found and changed. The kinds count new events only: a rescan shows 0.

    ``unmatched`` counts the findings that changed nothing (every scan counts them again),
    by reason in ``unmatched_reasons``; ``unverified`` the new notices waiting to be
    confirmed, listed in ``pending``.
    """

    source: str
    scanned: int
    hard: int
    soft: int
    unsubscribes: int
    complaints: int
    unmatched: int
    repeated: int
    suppressed_new: tuple[str, ...]
    unverified: int = 0
    unmatched_reasons: Mapping[str, int] = field(default_factory=dict)
    pending: tuple[PendingNotice, ...] = ()
    #: Maildir entries that are not mail files (a FIFO, a device): passed over
    skipped: int = 0

    def as_dict(self) -> dict[str, Any]:
        """The contract's keys (``suppressed_new`` is a count) and ``unverified``, then
        ``unmatched_reasons``, ``unverified_notices``, ``repeated`` and ``source``."""
        return {
            "scanned": self.scanned,
            "hard": self.hard,
            "soft": self.soft,
            "unsubscribes": self.unsubscribes,
            "complaints": self.complaints,
            "unmatched": self.unmatched,
            "suppressed_new": len(self.suppressed_new),
            "unverified": self.unverified,
            "unmatched_reasons": dict(self.unmatched_reasons),
            "unverified_notices": [p.as_dict() for p in self.pending],
            "repeated": self.repeated,
            "skipped": self.skipped,
            "source": self.source,
        }

    def message(self) -> str:
        """The scan in the shop's words."""
        lines = [
            f"読み込み元: {self.source}",
            f"読み込んだメール          {self.scanned:>7,} 通",
            f"不達（恒久的なエラー）    {self.hard:>7,} 件",
            f"不達（一時的なエラー）    {self.soft:>7,} 件",
            f"配信停止の申し出          {self.unsubscribes:>7,} 件",
            f"迷惑メールの報告          {self.complaints:>7,} 件",
            f"照合できない通知（無視）  {self.unmatched:>7,} 件",
        ]
        for reason, n in sorted(self.unmatched_reasons.items(), key=lambda kv: -kv[1]):
            lines.append(f"  {UNMATCHED_REASONS[reason]}: {n:,} 件")
        lines += [
            f"確認待ちの通知            {self.unverified:>7,} 件",
            f"新しく配信停止にした宛先  {len(self.suppressed_new):>7,} 件",
        ]
        if self.repeated:
            lines.append(f"（前回までに記録済み      {self.repeated:>7,} 件）")
        if self.pending:
            lines.append(
                "確認待ちの通知は、このショップのメールと照合できないため配信停止にしていません。"
                "本物と判断したものは bcartnb bounces confirm ID"
                "（またはメールアドレス）で確定します:"
            )
            lines += [p.line() for p in self.pending]
        if self.skipped:
            lines.append(f"（メールのファイルでないため飛ばしたもの {self.skipped:,} 件）")
        return "\n".join(lines)


def with_thresholds(
    settings: Settings,
    *,
    soft_threshold: int | None = None,
    soft_window_days: float | None = None,
) -> Settings:
    """``settings`` with the soft-bounce rule given for one scan (``--soft-threshold``, the
    notebook's parameters), checked like the settings file's."""
    h = settings.hygiene
    return settings.replace(
        hygiene=HygieneSettings(
            soft_threshold=h.soft_threshold if soft_threshold is None else soft_threshold,
            soft_window_days=h.soft_window_days if soft_window_days is None else soft_window_days,
            verp=h.verp,
            bounce_address=h.bounce_address,
        )
    )


def _key(prefix: str, *parts: object) -> str:
    return prefix + hashlib.sha256("\0".join(map(str, parts)).encode()).hexdigest()[:40]


def _event(
    parsed: Parsed,
    finding: Finding,
    match: Match,
    source: str,
    mailed: Mapping[str, tuple[str, int]],
) -> HygieneEvent | None:
    """The event a tied (or unverified) finding records; None for an unmatched one."""
    if match.mail is not None:
        mail = match.mail
        return HygieneEvent(
            key=_key("sent:", mail.campaign_id, mail.member_id, finding.kind),
            kind=finding.kind,
            address=mail.address,
            at=parsed.at,
            source=source,
            campaign_id=mail.campaign_id,
            member_id=mail.member_id,
            status=finding.status,
            detail=finding.detail,
        )
    if match.status != "unverified" or match.address is None:
        return None
    whose = mailed.get(match.address)
    return HygieneEvent(
        key="unverified:" + parsed.content_key(finding),
        kind=finding.kind,
        address=match.address,
        at=parsed.at,
        source=source,
        campaign_id=whose[0] if whose else None,
        member_id=whose[1] if whose else None,
        status=finding.status,
        detail=finding.detail,
        verified=False,
    )


def _progress_bar(mails: Iterator[bytes], n: int) -> Iterable[bytes]:
    """The reading's progress on stderr. tqdm (and the multiprocessing lock it makes) is
    imported only for it: a scan without a bar never loads them."""
    from tqdm.auto import tqdm

    shown: Iterable[bytes] = tqdm(
        mails, total=n, file=sys.stderr, unit="通", desc="不達メールの読み込み"
    )
    return shown


def scan_mailbox(
    source: str | os.PathLike[str],
    settings: Settings,
    *,
    ledger: Ledger | None = None,
    progress: bool = False,
    now: datetime | None = None,
    env: Mapping[str, str] | None = None,
    ssl_context: ssl.SSLContext | None = None,
) -> ScanResult:
    """Read every mail of ``source`` and record what it says; the mailbox is never changed."""
    pattern = unsubscribe_pattern(settings.unsubscribe_mailto)
    if settings.hygiene.verp:  # the mails carry signed VERPs: without the secret none verifies
        VerpSigner(settings.unsubscribe_secret)
    clock = now or now_tokyo()
    parsed: list[Parsed] = []
    # the mailbox first: a bad source (a control character in an IMAP URL, a FIFO) is refused
    # before the ledger is opened, let alone created
    with open_mailbox(source, env=env, ssl_context=ssl_context) as box:
        label = box.label

        parse = partial(parse_message, unsubscribe_to=pattern, now=clock)
        parsed = read_all(box, parse, _progress_bar) if progress else read_all(box, parse)
    with ledger_using(settings, ledger) as led:
        named = {f.address for p in parsed for f in p.findings if f.address}
        mailed = led.last_deliveries(named)
        matcher = Matcher(led, secret=settings.unsubscribe_secret, mailed=mailed)
        matcher.prefetch(ref for p in parsed if p.findings for ref in p.refs)
        where = f"scan {label}"[:300]
        events: dict[str, HygieneEvent] = {}
        unmatched: Counter[str] = Counter()
        for p in parsed:
            for finding in p.findings:
                match = matcher.match(
                    finding.kind,
                    finding.address,
                    refs=p.refs,
                    named=p.named,
                    foreign_ids=p.foreign_ids,
                    tokens=p.tokens,
                )
                event = _event(p, finding, match, where, mailed)
                if event is None:
                    unmatched[match.reason or "no_address"] += 1
                else:
                    events.setdefault(event.key, event)  # one mail, one event
        outcome = led.record_events(
            events.values(),
            soft_threshold=settings.hygiene.soft_threshold,
            soft_window=timedelta(days=settings.hygiene.soft_window_days),
            now=clock,
        )
        fresh = [e for e in events.values() if not e.verified]
        pending = pending_notices(
            r for r in led.unverified_events() if r["event_key"] in {e.key for e in fresh}
        )
    counts = {key: outcome.by_kind.get(kind, 0) for kind, key in _COUNT_KEYS.items()}
    return ScanResult(
        skipped=box.skipped,  # counted while it was read
        source=label,
        scanned=len(parsed),
        unmatched=sum(unmatched.values()),
        repeated=outcome.repeated,
        suppressed_new=outcome.suppressed_new,
        unverified=outcome.unverified,
        unmatched_reasons=dict(unmatched),
        pending=tuple(pending),
        **counts,
    )


@dataclass(frozen=True)
class ConfirmResult:
    """What ``bcartnb bounces confirm`` did: the notices now counted, the addresses listed."""

    confirmed: tuple[PendingNotice, ...]
    suppressed_new: tuple[str, ...]

    def as_dict(self) -> dict[str, Any]:
        """``confirmed`` and ``suppressed_new`` (counts), then ``notices`` (masked)."""
        return {
            "confirmed": len(self.confirmed),
            "suppressed_new": len(self.suppressed_new),
            "notices": [p.as_dict() for p in self.confirmed],
        }

    def message(self) -> str:
        """What was confirmed, in the shop's words (addresses masked)."""
        lines = [f"確認した通知 {len(self.confirmed):,} 件:"]
        lines += [p.line() for p in self.confirmed]
        lines.append(f"新しく配信停止にした宛先 {len(self.suppressed_new):,} 件")
        if any(p.kind == "soft_bounce" for p in self.confirmed):
            lines.append("（一時的な不達は、しきい値の回数に達するまで配信停止にしません）")
        return "\n".join(lines)


def unverified_notices(settings: Settings, *, ledger: Ledger | None = None) -> list[PendingNotice]:
    """Every notice still waiting for the marketer's word, oldest first (masked)."""
    with ledger_using(settings, ledger) as led:
        return pending_notices(led.unverified_events())


def confirm_notices(
    which: Iterable[str],
    settings: Settings,
    *,
    ledger: Ledger | None = None,
    now: datetime | None = None,
) -> ConfirmResult:
    """Count the unverified notices ``which`` names (ids or addresses) as the marketer's word.

    A hard bounce or a complaint then lists its address at once; a soft bounce counts toward
    the threshold like any other; an unsubscribe request lists it.
    """
    with ledger_using(settings, ledger) as led:
        done = led.confirm_events(
            which,
            soft_threshold=settings.hygiene.soft_threshold,
            soft_window=timedelta(days=settings.hygiene.soft_window_days),
            now=now,
        )
    return ConfirmResult(tuple(pending_notices(done.confirmed)), done.suppressed_new)
