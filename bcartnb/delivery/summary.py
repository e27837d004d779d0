"""What a run did, told truthfully: the summary, its closing words and its exit code.

A scheduler acts on the exit code and a marketer on the first line, so both are decided
here, once, from the journal's counts after the run: ``done`` (and
「メール送信を完了いたしました。」) only when nothing is left to send; every message says how
many mails went out, how many are left and why, and how to continue.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from bcartnb.audience import REASON_LABELS
from bcartnb.exceptions import IncompleteError
from bcartnb.ledger import CampaignRecord
from bcartnb.mailcheck import Finding
from bcartnb.privacy import mask_address, mask_text
from bcartnb.quota import QuotaStatus

__all__ = [
    "DONE_MESSAGE",
    "EXIT_CODES",
    "DeliverySummary",
    "mask_address",
    "mask_text",
    "quota_dict",
]

DONE_MESSAGE = "メール送信を完了いたしました。"

#: status → exit code of ``bcartnb run`` / ``resume`` (a finished campaign with mails refused
#: for good exits 5 instead of 0; see :attr:`DeliverySummary.exit_code`).
EXIT_CODES = {
    "dry-run": 0,
    "done": 0,
    "cancelled": 0,
    "refused": 3,
    "unfinished": 4,
    "interrupted": 130,
}


def quota_dict(status: QuotaStatus, used_after: int) -> dict[str, Any]:
    return {
        "plan": status.plan.name,
        "month": status.month,
        "cap": status.cap,
        "used_before": status.used,
        "used_after": used_after,
    }


@dataclass
class DeliverySummary:
    """What a run did; :meth:`as_dict` holds the contract's JSON keys and a few more.

    The counts (``sent``, ``failed``, ``pending``, ``deferred``, ``uncertain``, ``withheld``)
    are the whole campaign's after this run, resumes included; ``sent_now`` is this run's
    share. ``withheld``: mails not sent because their address was suppressed (an unsubscribe,
    a bounce) after the campaign began. ``cancelled``: mails the marketer ended unsent
    (``bcartnb cancel``, ``--drop-uncertain``, ``--skip-missing``); ``ended``: what this
    run's finishing choices ended, by choice (:data:`bcartnb.ledger.ENDED_BY`), as
    (member id, address).
    ``stopped`` / ``stopped_ja`` say why a run ended before its campaign was finished.
    """

    campaign_id: str
    status: str
    selected: int
    sendable: int
    unsendable: int
    reasons: dict[str, int]
    sent: int
    failed: int
    quota: dict[str, Any]
    dry_run: bool = False
    uncertain: list[tuple[int, str]] = field(default_factory=list)
    pending: int = 0
    deferred: int = 0
    withheld: int = 0
    cancelled: int = 0
    ended: dict[str, list[tuple[int, str]]] = field(default_factory=dict)
    sent_now: int = 0
    admin_copy: str | None = None
    failures: list[tuple[int, str, int | None, str]] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    stopped: str | None = None
    stopped_ja: str | None = None
    #: when the members were pulled from the B-Cart API (a snapshot file), else None
    members_pulled_at: str | None = None
    #: 送信前の確認 of the campaign's representative mail (:mod:`bcartnb.mailcheck`), whose member
    checks: list[Finding] = field(default_factory=list)
    checks_member: int | None = None

    @classmethod
    def from_record(
        cls,
        record: CampaignRecord,
        status: str,
        quota: dict[str, Any],
        uncertain: list[tuple[int, str]],
        **more: Any,
    ) -> DeliverySummary:
        """The campaign's counts as the journal has them after a run."""
        return cls(
            campaign_id=record.campaign_id,
            status=status,
            selected=record.selected,
            sendable=record.sendable,
            unsendable=record.unsendable,
            reasons=dict(record.reasons),
            sent=record.sent,
            failed=record.failed,
            pending=record.journal.get("pending", 0),
            deferred=record.journal.get("deferred", 0),
            withheld=record.journal.get("withheld", 0),
            cancelled=record.journal.get("cancelled", 0),
            uncertain=uncertain,
            admin_copy=record.admin_copy,
            quota=quota,
            **more,
        )

    @property
    def left(self) -> int:
        """Mails not yet sent nor refused for good."""
        return self.pending + self.deferred + len(self.uncertain)

    @property
    def exit_code(self) -> int:
        """0 finished and all accepted, 3 refused by the quota, 4 unfinished, 5 finished
        with refusals, 130 Ctrl-C."""
        code = EXIT_CODES[self.status]
        if self.status == "done" and self.failed:
            return 5
        return code

    def raise_for_status(self) -> None:
        """Raise :class:`IncompleteError` unless the run finished with every mail accepted.

        For a papermill notebook or a script that must fail (after its report is written)
        when a campaign is unfinished (4), was partly refused (5) or interrupted (130).
        """
        code = self.exit_code
        if code:
            head = self.message().splitlines()[0]
            raise IncompleteError(
                f"campaign {self.campaign_id}: {self.status}, {self.sent} sent, "
                f"{self.failed} failed, {self.left} left"
                + (f" ({self.stopped})" if self.stopped else "")
                + (f"; `{self.resume_command}` continues" if self.left else ""),
                ja=head,
                exit_code=code,
            )

    def as_dict(self) -> dict[str, Any]:
        return {
            "campaign_id": self.campaign_id,
            "status": self.status,
            "exit_code": self.exit_code,
            "dry_run": self.dry_run,
            "selected": self.selected,
            "sendable": self.sendable,
            "unsendable": self.unsendable,
            "reasons": dict(self.reasons),
            "sent": self.sent,
            "failed": self.failed,
            "deferred": self.deferred,
            "uncertain": len(self.uncertain),
            "pending": self.pending,
            "withheld": self.withheld,
            "cancelled": self.cancelled,
            "ended": {k: [m for m, _ in v] for k, v in self.ended.items()},
            "sent_now": self.sent_now,
            "admin_copy": self.admin_copy,
            "quota": dict(self.quota),
            "stopped": self.stopped,
            "warnings": list(self.warnings),
            "members_pulled_at": self.members_pulled_at,
            "checks": [f.as_dict() for f in self.checks],
            "checks_member": self.checks_member,
        }

    @property
    def resume_command(self) -> str:
        """What continues the campaign; with only uncertain mails left, only the flag does."""
        if self.uncertain and not (self.pending or self.deferred):
            return f"bcartnb resume --resend-uncertain {self.campaign_id}"
        return f"bcartnb resume {self.campaign_id}"

    def message(self) -> str:
        """The closing words, in the wizard's and the command line's language."""
        q = self.quota
        cap = "上限なし" if q.get("cap") is None else f"{q['cap']:,}"
        counts = (
            f"送信件数 {self.sendable:,} / 送信できない件数 {self.unsendable:,} / "
            f"送信済み {self.sent:,} / 失敗 {self.failed:,}"
        )
        if self.withheld:
            counts += f" / 配信停止のため送らなかった {self.withheld:,}"
        if self.cancelled:
            counts += f" / 取り消し {self.cancelled:,}"
        if self.left and not self.dry_run:
            counts += (
                f" / 残り {self.left:,}（未送信 {self.pending:,}・再試行待ち {self.deferred:,}"
                f"・結果不明 {len(self.uncertain):,}）"
            )
        quota = (
            f"今月の配信数 {q.get('used_before', 0):,} → {q.get('used_after', 0):,}（上限 {cap}）"
        )
        lines = [self._head(), counts]
        if self.members_pulled_at:
            lines.append(f"会員データ: Bカートから {self.members_pulled_at} に取得したもの")
        if self.stopped_ja or self.stopped:
            lines.append(f"止まった理由: {self.stopped_ja or self.stopped}")
        reasons = [
            f"{REASON_LABELS.get(code, code)} {n:,}" for code, n in self.reasons.items() if n
        ]
        if reasons:
            lines.append("送信できない理由: " + " / ".join(reasons))
        lines.append(quota)
        lines += self._ended_lines()
        if self.deferred and not self.dry_run:
            lines.append(
                f"受信側が一時的に受け取りを保留したメール {self.deferred:,} 件は、"
                f"あとで `{self.resume_command}` を実行すると再送します"
                f"（あきらめるときは `bcartnb resume --give-up-deferred {self.campaign_id}`、"
                f"配信をやめるときは `bcartnb cancel {self.campaign_id}`）。"
            )
        if self.uncertain:
            lines.append(
                f"送信結果が不明なメール {len(self.uncertain)} 件（送った直後に接続が切れました。"
                "届いている可能性があります）: "
                + ", ".join(f"{mid} {mask_address(a)}" for mid, a in self.uncertain[:10])
                + "。届いていないと確かめたうえで再送するには `bcartnb resume --resend-uncertain "
                + f"{self.campaign_id}` を、届いていたら `--mark-uncertain-sent`、"
                "再送しないなら `--drop-uncertain` を付けて実行してください。"
            )
        return "\n".join(lines)

    def _ended_lines(self) -> list[str]:
        words = {
            "gave_up": "再送をあきらめて失敗にしたメール",
            "marked_sent": "届いたと確認して送信済みにしたメール",
            "dropped": "再送しないことにしたメール",
            "missing": "会員ファイルにいないため送らないことにしたメール",
        }
        return [
            f"{words[why]} {len(rows):,} 件: "
            + ", ".join(f"{m} {mask_address(a)}" for m, a in rows[:10])
            + (" …" if len(rows) > 10 else "")
            for why, rows in self.ended.items()
            if rows and why in words
        ]

    def _head(self) -> str:
        if self.dry_run:
            return (
                "確認のみ（送信していません）。送信するには --send / send=True を指定してください。"
            )
        if self.status == "cancelled":
            return (
                f"キャンペーン {self.campaign_id} の配信を取り消しました。これ以上は送りません"
                f"（送信済み {self.sent:,} 件はそのまま今月の配信数に数えます）。"
            )
        if self.status == "done":
            if not self.sendable and self.reasons.get("already_sent"):
                return "送るメールはありません: 対象の会員には、すべて同じメールを送信済みです。"
            if not self.failed:
                return DONE_MESSAGE
            if self.sent:
                return (
                    f"メール送信を完了いたしました。ただし {self.failed:,} 件は受信側に"
                    "拒否されました（送信に失敗した会員を確認してください）。"
                )
            return "メールを送信できませんでした（すべての宛先が受信側に拒否されました）。"
        if self.status == "refused":
            return self.stopped_ja or "メール配信上限数を超えるため、何も送信していません。"
        now = f"この実行で {self.sent_now:,} 件を送信しました。" if self.sent_now else ""
        if self.status == "interrupted":
            return (
                f"送信を中断しました。{now}続きは `{self.resume_command}` で送れます"
                "（同じ会員に二度は送りません）。"
            )
        if self.uncertain and not (self.pending or self.deferred):
            return (
                f"送信はまだ終わっていません。{now}残りは送信結果が不明なメール "
                f"{len(self.uncertain):,} 件だけです。届いていないと確かめたうえで "
                f"`{self.resume_command}` を実行すると再送します"
                "（届いていた会員には二通目になります）。"
            )
        return (
            f"送信はまだ終わっていません。{now}残り {self.left:,} 件は "
            f"`{self.resume_command}` で送れます（同じ会員に二度は送りません）。"
        )
