"""Delivery against real aiosmtpd servers: retries, drops, refusals, quota, resume, repeats."""

from __future__ import annotations

import email
import email.policy
import sys
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest
from smtp_servers import Faults, TestServer

from bcartnb import campaign
from bcartnb.campaign import CampaignPlan, CampaignSpec, dry_run, plan_campaign
from bcartnb.delivery import DONE_MESSAGE, DeliverySummary, RateLimiter, mask_address
from bcartnb.exceptions import (
    CampaignStateError,
    ComposeError,
    QuotaExceededError,
)
from bcartnb.ledger import Ledger
from bcartnb.settings import Settings
from bcartnb.transports import Transport


def deliver(
    plan: CampaignPlan, transport: Transport | None = None, **kwargs: object
) -> DeliverySummary:
    """The conductor's send of a planned campaign (claim, then deliver)."""
    return campaign.send(plan, transport=transport, **kwargs)  # type: ignore[arg-type]


def resume(campaign_id: str, settings: Settings, **kwargs: object) -> DeliverySummary:
    return campaign.resume(campaign_id, settings, **kwargs).summary  # type: ignore[arg-type]


HEADER = "会員ID,会社名,担当者(姓),担当者(名),メールアドレス,都道府県,メール案内\n"


def write_members(path: Path, n: int, *, extra: str = "") -> Path:
    rows = [
        f"{1000 + i},テスト商事{i},山田,太郎{i},user{i}@example.co.jp,東京都,受け取る\n"
        for i in range(n)
    ]
    path.write_text(HEADER + "".join(rows) + extra, encoding="utf-8")
    return path


def make_settings(tmp_path: Path, server: TestServer, **changes: object) -> Settings:
    base: dict[str, object] = {
        "plan": "プラン10",
        "from_addr": "shop@example.co.jp",
        "from_name": "見本商事",
        "admin": "admin@example.co.jp",
        "signature": "見本商事株式会社 東京都千代田区1-1 配信停止: shop@example.co.jp",
        "db": tmp_path / "ledger.sqlite3",
        "smtp": server.settings(),
    }
    base.update(changes)
    return Settings(**base)  # type: ignore[arg-type]


def spec_for(members: Path, **changes: object) -> CampaignSpec:
    data: dict[str, object] = {
        "members": str(members),
        "subject": "{{ 会社名 }} 様 12月のご案内",
        "body": "{{ 会社名 }} {{ 担当者名 }} 様\nいつもありがとうございます。\n",
    }
    data.update(changes)
    return CampaignSpec.from_mapping(data)


def member_mails(server: TestServer) -> list[str]:
    return [r.recipients[0] for r in server.received if r.recipients[0] != "admin@example.co.jp"]


def admin_copies(server: TestServer) -> list[bytes]:
    return [r.raw for r in server.received if r.recipients == ("admin@example.co.jp",)]


Server = Callable[..., TestServer]


def test_send_campaign_each_member_once_admin_copy_once(tmp_path: Path, smtp_server: Server):
    server = smtp_server()
    members = write_members(
        tmp_path / "m.csv", 30, extra="2000,重複,佐藤,花子,USER3@example.co.jp,大阪府,受け取る\n"
    )
    settings = make_settings(tmp_path, server)
    plan = plan_campaign(spec_for(members), settings)
    summary = deliver(plan, progress=False)

    assert summary.status == "done"
    assert (summary.selected, summary.sendable, summary.unsendable) == (31, 30, 1)
    assert summary.reasons["duplicate_address"] == 1
    assert (summary.sent, summary.failed) == (30, 0)
    assert sorted(member_mails(server)) == sorted(f"user{i}@example.co.jp" for i in range(30))
    assert summary.quota == {
        "plan": "プラン10",
        "month": summary.quota["month"],
        "cap": 2000,
        "used_before": 0,
        "used_after": 30,
    }
    assert summary.message().startswith(DONE_MESSAGE)
    # the admin copy: one, with the counts, not counted in the quota
    copies = admin_copies(server)
    assert len(copies) == 1
    body = email.message_from_bytes(copies[0], policy=email.policy.default)
    assert str(body["Subject"]).startswith("【配信控え】")
    text = body.get_content()
    assert "送信件数: 30" in text and "送信できない件数: 1" in text and summary.campaign_id in text
    with Ledger.open(settings.db) as led:
        assert led.usage("プラン10").used == 30
        assert led.usage("プラン10").reserved == 0
        assert set(led.deliveries(summary.campaign_id)["state"]) == {"sent"}
    # K reused sessions, not one per mail; the admin copy rides one of them
    assert server.sessions == settings.delivery.connections
    assert {r.connection for r in server.received} == set(range(1, server.sessions + 1))


def test_dry_run_sends_nothing_and_projects_quota(tmp_path: Path, smtp_server: Server):
    server = smtp_server()
    members = write_members(
        tmp_path / "m.csv", 5, extra="2000,空欄商事,佐藤,花子,,大阪府,受け取る\n"
    )
    settings = make_settings(tmp_path, server)
    summary = dry_run(plan_campaign(spec_for(members), settings))
    assert summary.dry_run and summary.sent == 0
    assert "送信できない理由: メールアドレスが空欄 1" in summary.message()
    assert summary.quota["used_after"] == 5 and summary.quota["used_before"] == 0
    assert server.received == []
    with Ledger.open(settings.db) as led:
        assert led.usage("プラン10").used == 0
        assert led.campaigns().empty


def test_compose_error_stops_before_first_mail(tmp_path: Path, smtp_server: Server):
    server = smtp_server()
    members = write_members(
        tmp_path / "m.csv", 5, extra="3000,①商事,鈴木,一郎,x@example.co.jp,東京都,受け取る\n"
    )
    settings = make_settings(tmp_path, server)
    plan = plan_campaign(spec_for(members, encoding="iso-2022-jp"), settings)
    with pytest.raises(ComposeError) as exc:
        deliver(plan, progress=False)
    assert "3000" in str(exc.value) and "①" in str(exc.value)
    assert server.received == []


def test_quota_refusal_sends_nothing(tmp_path: Path, smtp_server: Server):
    server = smtp_server()
    members = write_members(tmp_path / "m.csv", 101)
    settings = make_settings(tmp_path, server, plan="light")
    plan = plan_campaign(spec_for(members), settings)
    with pytest.raises(QuotaExceededError) as exc:
        dry_run(plan)
    assert "cap 100" in str(exc.value)
    with pytest.raises(QuotaExceededError):
        deliver(plan, progress=False)
    assert server.received == [] and server.sessions == 0  # not even a knock on the door
    with Ledger.open(settings.db) as led:
        status = led.usage("light")
        assert (status.used, status.reserved) == (0, 0)
        assert list(led.campaigns()["status"]) == ["cancelled"]  # nothing ever went out


def test_temporary_replies_are_retried_and_count_once(tmp_path: Path, smtp_server: Server):
    server = smtp_server(faults=Faults(temp_fail=3, temp_reply="451 4.3.0 Try again later"))
    members = write_members(tmp_path / "m.csv", 6)
    settings = make_settings(tmp_path, server)
    waits: list[float] = []
    summary = deliver(
        plan_campaign(spec_for(members), settings), progress=False, sleep=waits.append
    )
    assert summary.status == "done" and summary.sent == 6
    assert Counter(member_mails(server)) == Counter(f"user{i}@example.co.jp" for i in range(6))
    assert summary.quota["used_after"] == 6  # a mail counts once, when first handed over
    assert waits and waits[0] == settings.delivery.backoff


def test_421_closes_connection_then_success(tmp_path: Path, smtp_server: Server):
    server = smtp_server(faults=Faults(temp_fail=1, temp_reply="421 4.7.0 Too busy"))
    members = write_members(tmp_path / "m.csv", 4)
    settings = make_settings(tmp_path, server)
    summary = deliver(
        plan_campaign(spec_for(members), settings), progress=False, sleep=lambda s: None
    )
    assert summary.sent == 4 and summary.failed == 0
    assert len(member_mails(server)) == 4


def test_retries_exhausted_leave_the_mail_deferred_for_resume(tmp_path: Path, smtp_server: Server):
    server = smtp_server(faults=Faults(defer={"user1@example.co.jp": 3}))
    members = write_members(tmp_path / "m.csv", 3)
    settings = make_settings(tmp_path, server)
    waits: list[float] = []
    summary = deliver(
        plan_campaign(spec_for(members), settings), progress=False, sleep=waits.append, retries=2
    )
    # never "failed" for a 4xx: deferred, the campaign unfinished (exit 4), nothing lost
    assert (summary.sent, summary.failed, summary.deferred) == (2, 0, 1)
    assert summary.status == "unfinished" and summary.exit_code == 4
    assert summary.quota["used_after"] == 3  # user1 counted once, however often retried
    assert sum(waits) == settings.delivery.backoff * (1 + 2)  # two rounds, doubling
    assert "bcartnb resume" in summary.message() and summary.admin_copy is None
    assert admin_copies(server) == []  # the admin copy waits until the campaign is finished
    done = resume(summary.campaign_id, settings, progress=False, sleep=waits.append)
    assert (done.status, done.sent, done.exit_code) == ("done", 3, 0)
    assert Counter(member_mails(server)) == Counter(f"user{i}@example.co.jp" for i in range(3))
    assert len(admin_copies(server)) == 1
    with Ledger.open(settings.db) as led:
        assert led.usage("プラン10").used == 3


def test_550_recipients_fail_and_count(tmp_path: Path, smtp_server: Server):
    server = smtp_server(faults=Faults(reject={"user2@example.co.jp", "user4@example.co.jp"}))
    members = write_members(tmp_path / "m.csv", 6)
    settings = make_settings(tmp_path, server)
    summary = deliver(plan_campaign(spec_for(members), settings), progress=False)
    assert (summary.sent, summary.failed) == (4, 2)
    assert {f[0] for f in summary.failures} == {1002, 1004}
    assert all(f[2] == 550 for f in summary.failures)
    assert summary.quota["used_after"] == 6
    assert summary.status == "done" and summary.exit_code == 5  # finished, some refused
    text = email.message_from_bytes(admin_copies(server)[0], policy=email.policy.default)
    assert "u***@example.co.jp" in text.get_content()  # failures listed, masked


def test_drop_before_data_is_retried(tmp_path: Path, smtp_server: Server):
    server = smtp_server(faults=Faults(drop_at={3}, drop_stage="MAIL"))
    members = write_members(tmp_path / "m.csv", 8)
    settings = make_settings(tmp_path, server)
    summary = deliver(
        plan_campaign(spec_for(members), settings), progress=False, sleep=lambda s: None
    )
    assert summary.sent == 8 and not summary.uncertain
    assert Counter(member_mails(server)) == Counter(f"user{i}@example.co.jp" for i in range(8))


def test_drop_after_data_is_uncertain_and_resent_only_on_request(
    tmp_path: Path, smtp_server: Server
):
    server = smtp_server(faults=Faults(drop_at={2}, drop_stage="DATA"))
    members = write_members(tmp_path / "m.csv", 5)
    settings = make_settings(tmp_path, server)
    summary = deliver(
        plan_campaign(
            spec_for(members),
            settings,
        ),
        progress=False,
        connections=1,
    )
    # lost after its data, and the only connection: no reply can tell the server still
    # answers, so the run stops there (the uncertain window: one mail per connection)
    assert (summary.sent, len(summary.uncertain), summary.pending) == (1, 1, 3)
    assert summary.status == "unfinished" and "after the message data" in str(summary.stopped)
    assert len(member_mails(server)) == 2  # the dropped one did arrive
    # resume without the flag sends the others, not the uncertain one
    again = resume(summary.campaign_id, settings, progress=False)
    assert again.sent == 4 and len(again.uncertain) == 1
    assert "bcartnb resume --resend-uncertain" in again.message()
    assert len(member_mails(server)) == 5
    assert len(resume(summary.campaign_id, settings, progress=False).uncertain) == 1
    assert len(member_mails(server)) == 5
    # with the flag, the uncertain one goes again (a deliberate duplicate), counted again
    final = resume(summary.campaign_id, settings, progress=False, resend_uncertain=True)
    assert final.sent == 5 and not final.uncertain
    assert len(member_mails(server)) == 6
    with Ledger.open(settings.db) as led:
        assert led.usage("プラン10").used == 6


def test_the_same_mail_twice_mails_nobody_again_unless_repeat(tmp_path: Path, smtp_server: Server):
    server = smtp_server()
    members = write_members(tmp_path / "m.csv", 3)
    settings = make_settings(tmp_path, server)
    first = deliver(plan_campaign(spec_for(members), settings), progress=False)
    again = deliver(plan_campaign(spec_for(members), settings), progress=False)
    # nothing sent, nothing recorded: every member is held back, naming the first campaign
    assert (again.status, again.exit_code, again.sent, again.sendable) == ("done", 0, 0, 0)
    assert again.reasons["already_sent"] == 3 and again.campaign_id == first.campaign_id
    assert any(first.campaign_id in w and "--repeat" in w for w in again.warnings)
    assert len(member_mails(server)) == 3
    with Ledger.open(settings.db) as led:
        assert len(led.campaigns()) == 1
    second = deliver(plan_campaign(spec_for(members), settings), progress=False, repeat=True)
    assert second.sent == 3 and len(member_mails(server)) == 6
    # a different body is a different mail
    other = deliver(
        plan_campaign(spec_for(members, body="別の本文 {{ 会社名 }}"), settings), progress=False
    )
    assert other.sent == 3


def test_unreachable_server_names_host_port_and_leaves_it_unfinished(
    tmp_path: Path, smtp_server: Server
):
    server = smtp_server()
    port = server.port
    server.stop()  # a closed port on 127.0.0.1
    members = write_members(tmp_path / "m.csv", 4)
    settings = make_settings(tmp_path, server)
    summary = deliver(plan_campaign(spec_for(members), settings), progress=False)
    assert summary.status == "unfinished" and summary.exit_code == 4
    assert f"127.0.0.1:{port}" in str(summary.stopped)
    assert "接続できません" in summary.message() and "bcartnb resume" in summary.message()
    with Ledger.open(settings.db) as led:
        status = led.usage("プラン10")
        assert (status.used, status.reserved) == (0, 0)
        frame = led.campaigns()
        assert list(frame["status"]) == ["unfinished"]
        first_id = frame["campaign_id"][0]
        assert set(led.deliveries(first_id)["state"]) == {"pending"}
        assert set(led.deliveries(first_id)["attempts"]) == {0}  # never started: no attempt
    # running the same campaign again continues it: the same id, nobody twice
    live = smtp_server()
    again = deliver(plan_campaign(spec_for(members), make_settings(tmp_path, live)), progress=False)
    assert (again.campaign_id, again.sent, again.status) == (first_id, 4, "done")
    assert any("続き" in w for w in again.warnings)
    nothing = resume(first_id, make_settings(tmp_path, live), progress=False)
    assert nothing.status == "done" and nothing.exit_code == 0
    assert Counter(member_mails(live)) == Counter(f"user{i}@example.co.jp" for i in range(4))
    with Ledger.open(settings.db) as led:
        assert len(led.campaigns()) == 1 and led.usage("プラン10").used == 4


def test_wrong_password_and_resume_after_fix(tmp_path: Path, smtp_server: Server):
    server = smtp_server(users={"shop": "right"}, auth_required=True)
    members = write_members(tmp_path / "m.csv", 3)
    bad = make_settings(tmp_path, server, smtp=server.settings(user="shop", password="wrong"))
    summary = deliver(plan_campaign(spec_for(members), bad), progress=False)
    assert summary.exit_code == 4
    assert f"127.0.0.1:{server.port}" in str(summary.stopped)
    assert "wrong" not in str(summary.stopped) and "wrong" not in summary.message()
    assert server.received == []
    good = make_settings(tmp_path, server, smtp=server.settings(user="shop", password="right"))
    done = resume(summary.campaign_id, good, progress=False)
    assert done.sent == 3 and done.status == "done"
    assert all(r.auth_user == "shop" for r in server.received)


def test_starttls_auth_and_tls_failure(tmp_path: Path, smtp_server: Server, tls_ca):  # type: ignore[no-untyped-def]
    server = smtp_server(
        security="starttls", users={"shop": "pw"}, auth_required=True, require_starttls=True
    )
    members = write_members(tmp_path / "m.csv", 3)
    settings = make_settings(tmp_path, server, smtp=server.settings(user="shop", password="pw"))
    summary = deliver(
        plan_campaign(spec_for(members), settings),
        server.transport(user="shop", password="pw"),
        progress=False,
    )
    assert summary.sent == 3 and all(r.tls for r in server.received)
    # a client that does not trust the certificate: a TLS failure, nothing sent
    from bcartnb.transports import SmtpTransport

    other = write_members(tmp_path / "o.csv", 2)
    failed = deliver(
        plan_campaign(spec_for(other, subject="TLS {{ 会社名 }}"), settings),
        SmtpTransport(server.settings(user="shop", password="pw")),
        progress=False,
    )
    assert failed.exit_code == 4 and f"127.0.0.1:{server.port}" in str(failed.stopped)
    assert "TLS" in str(failed.stopped)
    assert len(server.received) == 4


def test_ssl_transport(tmp_path: Path, smtp_server: Server):
    server = smtp_server(security="ssl")
    members = write_members(tmp_path / "m.csv", 3)
    settings = make_settings(tmp_path, server)
    summary = deliver(
        plan_campaign(spec_for(members), settings), server.transport(), progress=False
    )
    assert summary.sent == 3


def test_rate_limiter_windows_with_fake_clock() -> None:
    now = [0.0]
    slept: list[float] = []

    def sleep(s: float) -> None:
        slept.append(s)
        now[0] += s

    limiter = RateLimiter(per_second=2, per_hour=5, clock=lambda: now[0], sleep=sleep)
    stamps = []
    for _ in range(7):
        limiter.acquire()
        stamps.append(now[0])
    assert stamps[:2] == [0.0, 0.0]
    assert stamps[2] == 1.0  # third mail waits for the 1 s window
    assert stamps[5] == 3600.0  # sixth mail waits for the hour window
    for i in range(len(stamps)):
        assert sum(1 for t in stamps if stamps[i] - 1 < t <= stamps[i]) <= 2
        assert sum(1 for t in stamps if stamps[i] - 3600 < t <= stamps[i]) <= 5


def test_rate_limiter_fractional_rate() -> None:
    now = [0.0]
    limiter = RateLimiter(
        per_second=0.5, clock=lambda: now[0], sleep=lambda s: now.__setitem__(0, now[0] + s)
    )
    for _ in range(3):
        limiter.acquire()
    assert now[0] == 4.0


def test_mask_address() -> None:
    assert mask_address("taro@example.co.jp") == "t***@example.co.jp"
    assert mask_address("nonsense") == "***"


def test_spooled_mail_gets_the_send_time_date_and_is_otherwise_unchanged(
    tmp_path: Path, smtp_server: Server
):
    from datetime import datetime, timedelta

    from bcartnb.delivery.spool import Spool
    from bcartnb.quota import TOKYO

    server = smtp_server()
    members = write_members(tmp_path / "m.csv", 3)
    plan = plan_campaign(spec_for(members), make_settings(tmp_path, server))
    composed_at = datetime(2026, 11, 27, 9, 0, tzinfo=TOKYO)
    clock = [composed_at]
    plan.composer.clock = lambda: clock[0]
    spool = Spool(plan)
    try:
        sent_at = composed_at + timedelta(hours=5)  # a rate-limited campaign takes hours
        clock[0] = sent_at
        for member_id in (1000, 1001, 1002):
            to, raw = spool.get(member_id)
            row = plan.audience.sendable[plan.audience.sendable["id"] == member_id].iloc[0]
            fresh = plan.composer.compose(row.to_dict())
            assert (to, raw) == (fresh.to, fresh.raw)
            parsed = email.message_from_bytes(raw, policy=email.policy.default)
            assert parsed["Date"].datetime == sent_at
    finally:
        spool.close()


def test_all_refused_is_not_called_complete(tmp_path: Path, smtp_server: Server):
    members = write_members(tmp_path / "m.csv", 2)
    server = smtp_server(faults=Faults(reject={"user0@example.co.jp", "user1@example.co.jp"}))
    summary = deliver(
        plan_campaign(spec_for(members), make_settings(tmp_path, server)), progress=False
    )
    assert (summary.sent, summary.failed) == (0, 2)
    assert not summary.message().startswith(DONE_MESSAGE)
    assert "すべての宛先が受信側に拒否" in summary.message()
    assert summary.exit_code == 5


def test_a_deliberate_repeat_can_still_be_resumed(tmp_path: Path, smtp_server: Server):
    server = smtp_server()
    members = write_members(tmp_path / "m.csv", 3)
    settings = make_settings(tmp_path, server)
    first = deliver(plan_campaign(spec_for(members), settings), progress=False)
    down = smtp_server()
    down.stop()
    repeat = deliver(
        plan_campaign(spec_for(members), make_settings(tmp_path, down)),
        progress=False,
        repeat=True,
    )
    assert repeat.exit_code == 4 and repeat.campaign_id != first.campaign_id
    # a second --repeat while the repeat is unfinished is refused: finish it first
    with pytest.raises(CampaignStateError, match=repeat.campaign_id):
        deliver(plan_campaign(spec_for(members), settings), progress=False, repeat=True)
    assert resume(repeat.campaign_id, settings, progress=False).sent == 3
    assert len(member_mails(server)) == 6  # the deliberate repeat, once
    assert resume(first.campaign_id, settings, progress=False).sent == 3  # nothing more
    assert len(member_mails(server)) == 6


def test_progress_callback_counts_finished_mails(tmp_path: Path, smtp_server: Server):
    server = smtp_server(faults=Faults(temp_fail=1))
    members = write_members(tmp_path / "m.csv", 5)
    calls: list[tuple[int, int]] = []
    summary = deliver(
        plan_campaign(spec_for(members), make_settings(tmp_path, server)),
        progress=lambda done, total: calls.append((done, total)),
        sleep=lambda s: None,
    )
    assert summary.sent == 5
    assert calls[0] == (0, 5) and calls[-1] == (5, 5)
    assert [d for d, _ in calls] == sorted(d for d, _ in calls)


def test_resume_composes_everything_before_sending(tmp_path: Path, smtp_server: Server):
    members = write_members(tmp_path / "m.csv", 4)
    down = smtp_server()
    down.stop()
    spec = spec_for(members, encoding="iso-2022-jp")
    cid = deliver(plan_campaign(spec, make_settings(tmp_path, down)), progress=False).campaign_id
    # the member file changed meanwhile: member 1003 now has a character ISO-2022-JP lacks
    text = members.read_text(encoding="utf-8").replace("テスト商事3", "①テスト商事3")
    members.write_text(text, encoding="utf-8")
    live = smtp_server()
    with pytest.raises(ComposeError, match="1003"):
        resume(cid, make_settings(tmp_path, live), progress=False)
    assert live.received == []
    members.write_text(text.replace("①", ""), encoding="utf-8")
    assert resume(cid, make_settings(tmp_path, live), progress=False).sent == 4


def test_a_server_that_stops_answering_leaves_only_its_mails_uncertain(
    tmp_path: Path, smtp_server: Server
):
    server = smtp_server(faults=Faults(hold_after=3))
    members = write_members(tmp_path / "m.csv", 5)
    # the timeout must pass for the held mails only: generous for a loaded machine's replies
    settings = make_settings(tmp_path, server, smtp=server.settings(timeout=3))
    summary = deliver(
        plan_campaign(spec_for(members), settings), progress=False, connections=1, retries=0
    )
    # 3 answered; the 4th got no answer within the timeout: with no other connection to
    # show the server still answers, the 5th is never handed over (one uncertain per
    # connection, not one per member left)
    assert summary.sent == 3 and summary.status == "unfinished" and summary.exit_code == 4
    assert [m for m, _ in summary.uncertain] == [1003] and summary.pending == 1
    assert not summary.message().startswith(DONE_MESSAGE)
    assert len(member_mails(server)) == 4  # it did arrive: resending would mail it twice
    server.release()


# --- the forked compose helper (only ever used by a single-threaded process) ----------------

HELPER_SCRIPT = r"""
import json, os, sys
from datetime import datetime
from pathlib import Path
from bcartnb.campaign import CampaignSpec, plan_campaign
from bcartnb.delivery.spool import Spool, SpoolHelper
from bcartnb.exceptions import BcartnbError
from bcartnb.quota import TOKYO
from bcartnb.settings import Settings

members, encoding = sys.argv[1], sys.argv[2]
spec = CampaignSpec.from_mapping({
    "members": members, "encoding": encoding,
    "subject": "{{ 会社名 }} 様 12月のご案内",
    "body": "{{ 会社名 }} {{ 担当者名 }} 様\nいつもありがとうございます。\n.ドットの行\n",
})
settings = Settings(plan="プラン10", from_addr="shop@example.co.jp", from_name="見本商事",
                    db=Path(members).with_name("l.sqlite3"))
plan = plan_campaign(spec, settings)
plan.composer.clock = lambda: datetime(2026, 11, 27, 9, 0, tzinfo=TOKYO)
ids = [int(i) for i in plan.audience.sendable["id"]]
out = {"threads": __import__("threading").active_count()}
try:
    helper = SpoolHelper(plan.composer, plan.audience.sendable, chunk=4)
    try:
        forked = Spool(plan, helper)
    finally:
        helper.close()
    serial = Spool(plan)
    out["same"] = all(forked.get(i) == serial.get(i) for i in ids)
    out["files"] = len(forked._files)
except BcartnbError as err:
    out["error"] = f"{type(err).__name__}: {err}"
try:
    os.waitpid(-1, os.WNOHANG)
    out["zombie"] = True
except ChildProcessError:
    out["zombie"] = False
print(json.dumps(out, ensure_ascii=False))
"""


def _run_helper(tmp_path: Path, members: Path, encoding: str = "utf-8") -> dict[str, object]:
    import json
    import subprocess
    import sys

    proc = subprocess.run(
        [sys.executable, "-c", HELPER_SCRIPT, str(members), encoding],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    return dict(json.loads(proc.stdout))


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="fork helper is Linux only")
def test_the_forked_half_of_the_spool_is_byte_for_byte_the_serial_one(tmp_path: Path):
    members = write_members(tmp_path / "m.csv", 41)
    out = _run_helper(tmp_path, members)
    assert out == {"threads": 1, "same": True, "files": 2, "zombie": False}


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="fork helper is Linux only")
def test_an_error_in_the_forked_half_is_the_real_error_naming_the_member(tmp_path: Path):
    members = write_members(
        tmp_path / "m.csv", 6, extra="3000,①商事,鈴木,一郎,x@example.co.jp,東京都,受け取る\n"
    )
    out = _run_helper(tmp_path, members, "iso-2022-jp")
    error = str(out["error"])
    assert error.startswith("ComposeError: member 3000") and "①" in error
    assert out["zombie"] is False


def test_a_campaign_through_a_pipelining_server(tmp_path: Path, smtp_server: Server):
    server = smtp_server(faults=Faults(pipelining=True, reject={"user3@example.co.jp"}))
    members = write_members(tmp_path / "m.csv", 9)
    settings = make_settings(tmp_path, server)
    summary = deliver(plan_campaign(spec_for(members), settings), progress=False)
    assert (summary.sent, summary.failed, summary.admin_copy) == (8, 1, "sent")
    assert sorted(member_mails(server)) == sorted(
        f"user{i}@example.co.jp" for i in range(9) if i != 3
    )
    assert all(r.pipelined for r in server.received)


def test_ctrl_c_while_the_rate_limit_waits_stops_at_once_and_refunds(
    tmp_path: Path, smtp_server: Server
):
    import faulthandler
    import inspect
    import os
    import signal
    import sys
    import threading
    import time

    from bcartnb.delivery.connections import RateLimiter

    server = smtp_server()
    members = write_members(tmp_path / "m.csv", 4)
    settings = make_settings(tmp_path, server)
    plan = plan_campaign(spec_for(members), settings)
    # two mails an hour: the third waits for the limit, and the Ctrl-C lands in that wait,
    # sent once the main thread is seen waiting there (not after a guessed delay)
    main = threading.main_thread().ident

    def sleep_line(method: object) -> tuple[object, int]:
        lines, first = inspect.getsourcelines(method)  # type: ignore[arg-type]
        at = first + next(i for i, line in enumerate(lines) if "self.sleep(" in line)
        return method.__code__, at  # type: ignore[attr-defined]

    # the limiter's one wait: a pause with nothing in flight, or a blocking acquire (which
    # sleeps through pause)
    waits = {sleep_line(RateLimiter.pause)}

    def waiting_for_the_limit() -> bool:
        frame = sys._current_frames().get(main or 0)
        return frame is not None and (frame.f_code, frame.f_lineno) in waits

    def interrupt_when_waiting() -> None:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if waiting_for_the_limit():
                os.kill(os.getpid(), signal.SIGINT)
                return
            time.sleep(0.02)

    watcher = threading.Thread(target=interrupt_when_waiting, daemon=True)
    # a background job starts with SIGINT ignored: Ctrl-C must reach this test all the same
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    faulthandler.dump_traceback_later(120, exit=True)  # a hang here must not hang the suite
    watcher.start()
    try:
        summary = deliver(plan, progress=False, rate_per_hour=2, connections=1)
    finally:
        faulthandler.cancel_dump_traceback_later()
        watcher.join(60)
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # put back
    signal.signal(signal.SIGINT, previous)
    assert summary.status == "interrupted" and summary.uncertain == []
    assert (summary.sent, summary.pending) == (2, 2) and len(member_mails(server)) == 2
    assert summary.quota["used_after"] == 2  # the one marked but never started was refunded
    done = resume(summary.campaign_id, settings, progress=False)
    assert done.status == "done" and done.sent == 4
    assert sorted(member_mails(server)) == sorted(f"user{i}@example.co.jp" for i in range(4))


def test_the_admin_copy_reconnects_when_the_idle_session_is_gone(
    tmp_path: Path, smtp_server: Server
):
    # transactions 1-3 are the members' on one session; the 4th, the admin copy on that same
    # session, loses the connection before anything is sent, so a new session carries it
    server = smtp_server(faults=Faults(drop_at={4}, drop_stage="MAIL"))
    members = write_members(tmp_path / "m.csv", 3)
    settings = make_settings(tmp_path, server)
    summary = deliver(plan_campaign(spec_for(members), settings), progress=False, connections=1)
    assert (summary.sent, summary.admin_copy) == (3, "sent")
    assert len(admin_copies(server)) == 1 and server.sessions == 2


def test_resume_composes_only_the_mails_still_to_send(tmp_path: Path, smtp_server: Server):
    members = write_members(tmp_path / "m.csv", 4)
    down = smtp_server()
    down.stop()
    spec = spec_for(members, encoding="iso-2022-jp")
    cid = deliver(plan_campaign(spec, make_settings(tmp_path, down)), progress=False).campaign_id
    with Ledger.open(tmp_path / "ledger.sqlite3") as led:
        # as if member 1000 had gone out before the server went down
        assert led.take_over(cid)
        led.reserve(cid, 1, "プラン10")
        led.exchange(cid, [], [(1000, "pending")])
        led.mark_results(cid, [(1000, "sent", 250, "ok")])
        assert led.release(cid) == "unfinished"
    # member 1000's data changed since in a way ISO-2022-JP cannot carry: nobody resends it
    text = members.read_text(encoding="utf-8").replace("テスト商事0,", "①テスト商事0,")
    members.write_text(text, encoding="utf-8")
    live = smtp_server()
    done = resume(cid, make_settings(tmp_path, live), progress=False)
    assert done.status == "done" and done.sent == 4
    assert sorted(member_mails(live)) == [f"user{i}@example.co.jp" for i in (1, 2, 3)]
    # the admin copy's sample is member 1000's mail, which no longer composes: sent without it
    assert done.admin_copy == "sent" and len(admin_copies(live)) == 1


def test_a_hostile_server_reply_is_one_masked_printable_line_in_the_admin_copy(
    tmp_path: Path, smtp_server: Server
):
    reply = "550 5.1.1 <user1@example.co.jp> \x1b[2J\x1b[31mno such user\u202e" + "x" * 2000
    server = smtp_server(faults=Faults(reject={"user1@example.co.jp"}, reject_reply=reply))
    members = write_members(tmp_path / "m.csv", 3)
    summary = deliver(
        plan_campaign(spec_for(members), make_settings(tmp_path, server)), progress=False
    )
    assert summary.exit_code == 5
    (failure,) = summary.failures
    assert "\x1b" not in failure[3] and "\u202e" not in failure[3] and len(failure[3]) <= 500
    copy = email.message_from_bytes(admin_copies(server)[0], policy=email.policy.default)
    text = copy.get_content()
    assert "u***@example.co.jp" in text and "user1@example.co.jp" not in text
    assert "\x1b" not in text and "no such user" in text


def test_a_rate_limit_spaces_the_starts_but_keeps_every_connection_busy(
    tmp_path: Path, smtp_server: Server
):
    # Every mail is held unanswered: with 4 connections and room in the rate limit, 4 are
    # in flight at once (the limit is waited for before each hand-over, never by blocking
    # on a reply while a connection is idle).
    import threading

    server = smtp_server(faults=Faults(hold_after=0))
    members = write_members(tmp_path / "m.csv", 6)
    settings = make_settings(tmp_path, server)
    plan = plan_campaign(spec_for(members), settings)
    done: list[DeliverySummary] = []
    worker = threading.Thread(
        target=lambda: done.append(deliver(plan, progress=False, connections=4, rate_per_second=50))
    )
    worker.start()
    try:
        assert server.wait_held(4, timeout=60), "the rate limit serialised the connections"
        with Ledger.open(settings.db) as led:  # handed over: exactly the mails in flight
            states = Counter(led.deliveries(plan.campaign_id)["state"])
        assert (states["sending"], states["pending"]) == (4, 2)
    finally:
        server.release()
        worker.join(timeout=120)
    assert done and (done[0].status, done[0].sent) == ("done", 6)
    assert sorted(member_mails(server)) == sorted(f"user{i}@example.co.jp" for i in range(6))
