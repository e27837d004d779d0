"""Scan a bounce mailbox into the suppression list: ``bcartnb bounces scan SOURCE``.

Each mail is read (:mod:`bcartnb.hygiene.bounces`), matched to the campaign mail it answers
(:mod:`bcartnb.hygiene.matching`), and every finding becomes one
:class:`~bcartnb.ledger.HygieneEvent` keyed by the mail's own Message-ID and the address,
all recorded in one ledger transaction: scanning the same mailbox again (or two scans at
once) records each event once, and the second scan changes nothing. A hard bounce, a
complaint or an unsubscribe lists the address at once; soft bounces only at the threshold.

A bounce that names an address is recorded by that address, matched or not; one that names
none is placed through its VERP return path, else counted as ``unmatched`` and left alone.
"""

from __future__ import annotations

import os
import ssl
import sys
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any

from bcartnb.hygiene.bounces import parse_message, unsubscribe_pattern
from bcartnb.hygiene.matching import Matcher
from bcartnb.hygiene.sources import open_mailbox
from bcartnb.ledger import HygieneEvent, Ledger
from bcartnb.ledger import using as ledger_using
from bcartnb.quota import now_tokyo
from bcartnb.settings import HygieneSettings, Settings

__all__ = ["ScanResult", "scan_mailbox", "with_thresholds"]

#: Event kind → the key of the scan's count (DESIGN's JSON contract).
_COUNT_KEYS: Mapping[str, str] = {
    "hard_bounce": "hard",
    "soft_bounce": "soft",
    "unsubscribed": "unsubscribes",
    "complaint": "complaints",
}


@dataclass(frozen=True)
class ScanResult:
    """What a scan found and changed. The kinds count new events only: a rescan shows 0."""

    source: str
    scanned: int
    hard: int
    soft: int
    unsubscribes: int
    complaints: int
    unmatched: int
    repeated: int
    suppressed_new: tuple[str, ...]
    #: Maildir entries that are not mail files (a FIFO, a device): passed over
    skipped: int = 0

    def as_dict(self) -> dict[str, Any]:
        """The contract's keys (``suppressed_new`` is a count), then ``repeated`` and ``source``."""
        return {
            "scanned": self.scanned,
            "hard": self.hard,
            "soft": self.soft,
            "unsubscribes": self.unsubscribes,
            "complaints": self.complaints,
            "unmatched": self.unmatched,
            "suppressed_new": len(self.suppressed_new),
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
            f"宛先のわからない不達      {self.unmatched:>7,} 件",
            f"新しく配信停止にした宛先  {len(self.suppressed_new):>7,} 件",
        ]
        if self.repeated:
            lines.append(f"（前回までに記録済み      {self.repeated:>7,} 件）")
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


def _by_address(led: Ledger, events: list[HygieneEvent]) -> list[HygieneEvent]:
    """Name the member of events that quote no mail of ours, by the address's latest mail."""
    loose = [ev.address for ev in events if ev.campaign_id is None]
    found = led.last_deliveries(loose) if loose else {}
    return [
        replace(ev, campaign_id=found[key][0], member_id=found[key][1])
        if ev.campaign_id is None and (key := ev.address.lower()) in found
        else ev
        for ev in events
    ]


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
    from tqdm.auto import tqdm

    pattern = unsubscribe_pattern(settings.unsubscribe_mailto)
    with ledger_using(settings, ledger) as led:
        clock = now or now_tokyo()
        matcher = Matcher(led)
        events: list[HygieneEvent] = []
        scanned = unmatched = 0
        with open_mailbox(source, env=env, ssl_context=ssl_context) as box:
            label = box.label
            bar = tqdm(
                box,
                total=len(box),
                disable=not progress,
                file=sys.stderr,
                unit="通",
                desc="不達メールの読み込み",
            )
            for raw in bar:
                scanned += 1
                parsed = parse_message(raw, unsubscribe_to=pattern, now=clock)
                for finding in parsed.findings:
                    named = [finding.address] if finding.address else parsed.named
                    hit = matcher.match(parsed.refs, named)
                    address = finding.address or (hit[2] if hit else None)
                    if address is None:
                        unmatched += 1
                        continue
                    events.append(
                        HygieneEvent(
                            key=parsed.event_key(finding),
                            kind=finding.kind,
                            address=address,
                            at=parsed.at,
                            source=f"scan {label}"[:300],
                            campaign_id=hit[0] if hit else None,
                            member_id=hit[1] if hit else None,
                            status=finding.status,
                            detail=finding.detail,
                        )
                    )
        events = _by_address(led, events)
        outcome = led.record_events(
            events,
            soft_threshold=settings.hygiene.soft_threshold,
            soft_window=timedelta(days=settings.hygiene.soft_window_days),
            now=clock,
        )
    counts = {key: outcome.by_kind.get(kind, 0) for kind, key in _COUNT_KEYS.items()}
    return ScanResult(
        skipped=box.skipped,  # counted while it was read
        source=label,
        scanned=scanned,
        unmatched=unmatched,
        repeated=outcome.repeated,
        suppressed_new=outcome.suppressed_new,
        **counts,
    )
