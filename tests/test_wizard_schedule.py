"""予約配信 from the wizard (issue 27), driven from Python like a user: 「予約して送信」 on the
confirmation with a date and a time, 予約一覧 with 取消 and 内容を確認. The clock is set with
BCARTNB_NOW, and what the wizard scheduled is sent by a real ``bcartnb due`` process into a
real SMTP server: exactly once, to the members of send time, or not at all after 取消."""

from __future__ import annotations

import datetime as dt
import json
import re
import signal
import subprocess
import sys
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from smtp_servers import Faults, TestServer
from test_cli_run import ADMIN, bcartnb, env_for, member_mails, setup_campaign

from bcartnb import campaign
from bcartnb.campaign import CampaignSpec
from bcartnb.settings import Settings, load_settings
from bcartnb.widgets import Wizard
from bcartnb.widgets.schedule_form import DUE_HINT, TIMES, audience_note_html, send_at_of

Server = Callable[..., TestServer]
NOW = "2026-12-09T10:00"  # Tokyo time, the wizard's clock in every test here


class Shop:
    """A shop folder (settings file, members.csv, ledger) the wizard and ``due`` share."""

    def __init__(self, tmp_path: Path, server: TestServer, n: int, plan: str) -> None:
        setup_campaign(tmp_path, n, plan=plan)
        self.path = tmp_path
        self.server = server
        self.env = env_for(tmp_path, server)
        self.settings: Settings = load_settings(env=self.env)

    def wizard(self) -> Wizard:
        return Wizard(self.path / "members.csv", self.settings)

    def due(self, now: str) -> str:
        done = bcartnb("due", env={**self.env, "BCARTNB_NOW": now}, cwd=self.path)
        assert done.returncode == 0, done.stderr + done.stdout
        return done.stdout

    def listed(self) -> list[dict[str, object]]:
        done = bcartnb("schedule", "--all", "--json", env=self.env, cwd=self.path)
        assert done.returncode == 0, done.stderr
        rows: list[dict[str, object]] = json.loads(done.stdout)
        return rows


@pytest.fixture
def shop(
    tmp_path: Path, smtp_server: Server, monkeypatch: pytest.MonkeyPatch
) -> Callable[..., Shop]:
    monkeypatch.setenv("BCARTNB_NOW", NOW)

    def make(n: int = 5, plan: str = "プラン10", **server: Any) -> Shop:
        return Shop(tmp_path, smtp_server(**server), n, plan)

    return make


def confirmed(w: Wizard, *, ticked: list[int] | None = None, subject: str = "") -> None:
    """To the confirmation: every search result, or the ticked members."""
    if ticked:
        w.table.check(ticked)
        w.send_checked.click()
    else:
        w.send_all.click()
    assert w.stage == "compose", w.status.value
    w.compose.subject.value = subject or "{{ 会社名 }} 様へのご案内"
    w.compose.body.value = "{{ 会社名 }} 様\n本文です。"
    w.compose.to_confirm.click()
    assert w.stage == "confirm", w.status.value


def schedule_at(w: Wizard, day: dt.date | None, hhmm: str) -> str:
    form = w.confirm.schedule
    form.day.value = day
    form.time.value = hhmm
    form.button.click()
    return form.result.value


def row_of(w: Wizard, schedule_id: str):  # type: ignore[no-untyped-def]
    [found] = [
        r for r in w.schedules.rows.children if f"bcartnb-schedule-{schedule_id}" in r._dom_classes
    ]
    return found


def button(row, css: str):  # type: ignore[no-untyped-def]
    [found] = [c for c in row.children if css in getattr(c, "_dom_classes", ())]
    return found


def test_scheduled_from_the_confirmation_then_due_sends_it_once(shop: Callable[..., Shop]) -> None:
    s = shop(5)
    w = s.wizard()
    confirmed(w)
    form = w.confirm.schedule
    # offered at once: tomorrow 09:00 by the one clock, and who it goes to
    assert (form.day.value, form.time.value) == (dt.date(2026, 12, 10), "09:00")
    assert not form.button.disabled and not w.confirm.send.disabled
    assert "送信時点の会員に送ります" in form.note.value
    assert "検索結果すべて" in form.note.value and "5件" in form.note.value
    assert form in w.confirm.children and form.button in w.confirm.controls

    assert "まだありません" in w.header.ledger.value
    said = schedule_at(w, dt.date(2026, 12, 10), "09:00")
    [record] = campaign.scheduled_campaigns(s.settings)
    sid = record.schedule_id
    assert "まだありません" not in w.header.ledger.value  # scheduling made the ledger
    for words in (sid, "2026-12-10 09:00（日本時間）", DUE_HINT, "送信時点の会員に送ります"):
        assert words in said, said
    assert "まだ送信していません" in said and w.status.value.count(sid) == 1
    assert s.server.received == []  # scheduled, nothing sent
    assert form.button.disabled and w.confirm.send.disabled  # not scheduled twice, nor sent now
    form.button.click()
    w.confirm.send.click()
    assert len(campaign.scheduled_campaigns(s.settings)) == 1 and s.server.received == []
    # 予約一覧 heard of it
    assert [r.schedule_id for r in w.schedules.listed] == [sid]

    # a member joins after: the audience is resolved at send time
    with (s.path / "members.csv").open("a", encoding="utf-8") as fh:
        fh.write("2000,新規商事,佐藤,花子,new@example.co.jp,大阪府,受け取る\n")
    assert s.due("2026-12-10T08:59:59") == "" and s.server.received == []
    s.due("2026-12-10T09:00:20")
    expected = Counter([*(f"user{i}@example.co.jp" for i in range(5)), "new@example.co.jp"])
    assert member_mails(s.server) == expected
    s.due("2026-12-10T09:01:00")
    assert member_mails(s.server) == expected  # exactly once
    [row] = s.listed()
    assert row["status"] == "sent" and row["schedule_id"] == sid
    # the list read again says so, and offers no 取消 any more
    w.schedules.every.value = True
    line = row_of(w, sid)
    assert "送信済み" in button(line, "bcartnb-schedule-state").value
    assert not [c for c in line.children if "bcartnb-schedule-cancel" in c._dom_classes]


def test_ticked_members_are_the_audience_and_it_says_so(shop: Callable[..., Shop]) -> None:
    s = shop(5)
    w = s.wizard()
    confirmed(w, ticked=[1001, 1003])
    note = w.confirm.schedule.note.value
    assert "チェックした会員 2件（会員ID 1001、1003）" in note
    assert "チェックした会員の会員IDで決まっています" in note
    said = schedule_at(w, dt.date(2026, 12, 10), "09:00")
    assert "チェックした会員 2件（会員ID 1001、1003）" in said
    s.due("2026-12-10T09:00:30")
    assert member_mails(s.server) == Counter(["user1@example.co.jp", "user3@example.co.jp"])


def test_a_keyword_result_is_scheduled_by_its_member_ids(shop: Callable[..., Shop]) -> None:
    s = shop(5)
    w = s.wizard()
    w.filter_step.text.value = "テスト商事2"
    w.filter_step.apply.click()
    confirmed(w)
    assert "キーワード「テスト商事2」の検索結果の会員の会員IDで決まっています" in (
        w.confirm.schedule.note.value
    )


def test_cancel_from_the_list_asks_then_due_sends_nothing(shop: Callable[..., Shop]) -> None:
    s = shop(3)
    w = s.wizard()
    confirmed(w)
    schedule_at(w, dt.date(2026, 12, 10), "09:00")
    [record] = campaign.scheduled_campaigns(s.settings)
    sid = record.schedule_id
    w.schedules.open_button.click()
    line = row_of(w, sid)
    cells = " ".join(getattr(c, "value", "") for c in line.children)
    assert "2026-12-10 09:00" in cells and "様へのご案内" in cells and "3件" in cells
    assert "予約中" in cells and "検索結果すべて" in cells

    button(line, "bcartnb-schedule-cancel").click()
    assert w.schedules.ask.layout.display is None and sid in w.schedules.ask.text.value
    w.schedules.ask.no.click()  # キャンセル: nothing cancelled
    assert campaign.scheduled_campaign(s.settings, sid).status == "scheduled"
    button(row_of(w, sid), "bcartnb-schedule-cancel").click()
    w.schedules.ask.yes.click()
    assert campaign.scheduled_campaign(s.settings, sid).status == "cancelled"
    assert "を取り消しました（送信しません）" in w.schedules.status.value
    # the confirmation that scheduled it says so, and offers another time or 送信 now
    assert "を取り消しました（送信しません）" in w.confirm.schedule.result.value
    assert not w.confirm.schedule.button.disabled and not w.confirm.send.disabled
    assert w.schedules.listed == []  # gone from the list of those still to send
    assert "予約中の配信はありません" in w.schedules.rows.children[0].value

    s.due("2026-12-10T09:00:30")
    assert s.server.received == []  # nothing after 取消, not even a notice
    assert [r["status"] for r in s.listed()] == ["cancelled"]


def test_a_cancel_while_due_sends_it_stops_between_mails(shop: Callable[..., Shop]) -> None:
    """取消 from 予約一覧 while a real ``due`` sends the campaign: the ledger's rule stops that
    ``due`` between two mails, nothing more is sent, and no later ``due`` takes it up."""
    n = 30
    s = shop(n, faults=Faults(hold_after=5))
    w = s.wizard()
    confirmed(w)
    schedule_at(w, dt.date(2026, 12, 10), "09:00")
    proc = subprocess.Popen(
        [sys.executable, "-m", "bcartnb", "due"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**s.env, "BCARTNB_NOW": "2026-12-10T09:00:10"},
        cwd=s.path,
    )
    try:
        assert s.server.wait_held(4, timeout=60), "due never got its mails in flight"
        w.schedules.open_button.click()
        [record] = w.schedules.listed
        line = row_of(w, record.schedule_id)
        assert "送信中" in button(line, "bcartnb-schedule-state").value
        button(line, "bcartnb-schedule-cancel").click()
        w.schedules.ask.yes.click()
        assert "送信中でした。送っている途中のメールで止め、残りは送りません" in (
            w.schedules.status.value
        )
        # the confirmation's counts are stale now: confirm again, not 送信 from here
        assert "「戻る」から確認画面へ進み直してください" in w.confirm.schedule.result.value
        assert w.confirm.send.disabled and w.confirm.schedule.button.disabled
        s.server.release()  # the mails in flight get their answers while it stops
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert "送信中に取り消しました" in out
    sent = sum(member_mails(s.server).values())
    assert 5 <= sent < n and max(member_mails(s.server).values()) == 1
    assert [r["status"] for r in s.listed()] == ["cancelled"]
    s.due("2026-12-10T09:05")
    assert sum(member_mails(s.server).values()) == sent  # nothing after 取消


def test_a_cancel_after_due_sent_it_is_the_ledgers_refusal(shop: Callable[..., Shop]) -> None:
    s = shop(2)
    w = s.wizard()
    confirmed(w)
    schedule_at(w, dt.date(2026, 12, 10), "09:00")
    w.schedules.open_button.click()
    [record] = w.schedules.listed
    s.due("2026-12-10T09:00:30")  # sent while the list still shows it 予約中
    button(row_of(w, record.schedule_id), "bcartnb-schedule-cancel").click()
    w.schedules.ask.yes.click()
    assert w.schedules.status.kind == "error"
    assert "取り消せません（状態: sent）" in w.schedules.status.value
    assert w.schedules.listed == []  # read again: it is no longer to send
    assert len(member_mails(s.server)) == 2


@pytest.mark.parametrize(
    ("day", "hhmm", "words"),
    [
        (
            dt.date(2026, 12, 9),
            "09:55",
            "予約日時 2026-12-09 09:55 は過ぎています（現在 2026-12-09 10:00）",
        ),
        (dt.date(2026, 12, 9), "10:00", "今すぐ送るには「送信」を押してください"),
        (dt.date(2025, 1, 1), "00:00", "過ぎています"),
        (None, "09:00", "予約する送信日と時刻を選んでください"),
    ],
)
def test_a_past_or_missing_time_is_refused_in_japanese(
    shop: Callable[..., Shop], day: dt.date | None, hhmm: str, words: str
) -> None:
    s = shop(2)
    w = s.wizard()
    w.schedules.open_button.click()  # nothing scheduled yet: said, and no ledger made to say it
    assert "予約中の配信はありません" in w.schedules.rows.children[0].value
    confirmed(w)
    said = schedule_at(w, day, hhmm)
    assert words in said and "bcartnb-status-error" in said, said
    assert campaign.scheduled_campaigns(s.settings) == [] and s.server.received == []
    assert not w.confirm.schedule.button.disabled and not w.confirm.send.disabled
    assert w.stage == "confirm" and not (s.path / "ledger.sqlite3").exists()


def test_the_time_is_tokyo_time_and_every_choice_is_a_time() -> None:
    assert send_at_of(dt.date(2026, 12, 10), "09:00").isoformat() == "2026-12-10T09:00:00+09:00"
    assert TIMES[0] == "00:00" and TIMES[-1] == "23:55" and "09:00" in TIMES
    assert all(
        send_at_of(dt.date(2026, 12, 31), t).utcoffset() == dt.timedelta(hours=9) for t in TIMES
    )


def test_the_quota_is_projected_for_the_chosen_month(shop: Callable[..., Shop]) -> None:
    s = shop(60, plan="light")  # cap 100 a month
    first = CampaignSpec.from_mapping(
        {"members": str(s.path / "members.csv"), "subject": "先の予約", "body": "本文"}
    )
    at = campaign.parse_send_at("2026-12-10 09:00")
    campaign.schedule(first, s.settings, at)  # 60 of December's 100 already scheduled
    w = s.wizard()
    confirmed(w)
    form = w.confirm.schedule
    form.day.value = dt.date(2026, 12, 11)
    warned = form.outlook.value
    assert "2026-12 の配信済み 0件と予約済み 60件" in warned and "20件超えます" in warned
    form.day.value = dt.date(2027, 1, 4)  # next month counts against next month
    assert form.outlook.value == ""
    form.day.value = dt.date(2026, 12, 31)
    form.time.value = "23:55"
    assert "20件超えます" in form.outlook.value
    said = schedule_at(w, dt.date(2026, 12, 31), "23:55")
    assert "注意: 2026-12 の配信済み 0件と予約済み 60件" in said  # a warning, not a refusal
    assert len(campaign.scheduled_campaigns(s.settings)) == 2


def test_a_month_already_full_can_still_be_scheduled_into_next_month(
    shop: Callable[..., Shop], monkeypatch: pytest.MonkeyPatch
) -> None:
    s = shop(60, plan="light")
    w = s.wizard()
    confirmed(w, subject="十一月の配信")
    w.confirm.send.click()
    s.server.wait_for(61)
    assert w.stage == "done", w.status.value
    w.sending.again.click()
    confirmed(w, subject="十二月の配信")  # 60 more: over December's 100, so 送信 is refused
    assert w.confirm.send.disabled and w.status.kind == "error"
    assert not w.confirm.schedule.button.disabled
    said = schedule_at(w, dt.date(2027, 1, 5), "09:00")
    assert "予約しました" in said and "注意" not in said
    [record] = campaign.scheduled_campaigns(s.settings)
    assert record.month == "2027-01"


def test_content_view_shows_the_frozen_mail_as_the_member_gets_it(
    shop: Callable[..., Shop],
) -> None:
    s = shop(3)
    w = s.wizard()
    confirmed(w, subject="<script>alert(1)</script>{{ 会社名 }} 様")
    schedule_at(w, dt.date(2026, 12, 10), "09:00")
    w.schedules.open_button.click()
    [record] = w.schedules.listed
    line = row_of(w, record.schedule_id)
    cells = " ".join(getattr(c, "value", "") for c in line.children)
    assert "<script>" not in cells and "&lt;script&gt;" in cells
    button(line, "bcartnb-schedule-show").click()
    shown = w.schedules.view.value
    assert "&lt;script&gt;alert(1)&lt;/script&gt;テスト商事0 様" in shown  # merged for a member
    assert "<script>" not in shown
    assert "見本商事株式会社 東京都千代田区1-1" in shown  # the signature as scheduled
    assert "予約したとき 3件／今の会員で数えると 3件" in shown

    # the member file gone: said, and the mail shown as frozen, before merging
    (s.path / "members.csv").unlink()
    button(row_of(w, record.schedule_id), "bcartnb-schedule-show").click()
    shown = w.schedules.view.value
    assert "members.csv" in shown and "差し込み前の内容" in shown
    assert "{{ 会社名 }} 様\n本文です。" in shown
    assert w.schedules.status.kind != "error"


def test_a_resend_cannot_be_scheduled(shop: Callable[..., Shop]) -> None:
    s = shop(3)
    w = s.wizard()
    confirmed(w)
    w.confirm.send.click()
    s.server.wait_for(4)
    w.sending.again.click()
    confirmed(w)  # the same mail: everyone already has it
    w.confirm.repeat.value = True
    assert w.plan is not None and w.plan.repeat
    said = schedule_at(w, dt.date(2026, 12, 10), "09:00")
    assert "「同じ内容を再送する」は予約できません" in said
    assert campaign.scheduled_campaigns(s.settings) == []


def test_the_schedule_controls_freeze_with_the_others(shop: Callable[..., Shop]) -> None:
    s = shop(2)
    w = s.wizard()
    confirmed(w)
    form = w.confirm.schedule
    assert {form.day, form.time, form.button} <= set(w.controls)
    schedule_at(w, dt.date(2026, 12, 10), "09:00")
    assert s.server.received == []  # not even the admin: due tells the admin when it is sent
    s.due("2026-12-10T09:00:30")
    assert sum(r.recipients == (ADMIN,) for r in s.server.received) == 2  # copy and notice


_TAG = re.compile(r"<[^>]*>")


@settings(max_examples=200, deadline=None)
@given(
    name=st.text(max_size=30),
    value=st.text(max_size=30),
    keyword=st.text(max_size=30),
    checked=st.lists(st.integers(min_value=0, max_value=10**12), max_size=40),
)
@example(name="<script>.csv", value="</b><img src=x>", keyword="\r\n<b>", checked=[1])
def test_the_audience_note_says_any_rule_with_only_its_own_markup(
    name: str, value: str, keyword: str, checked: list[int]
) -> None:
    params = {
        "members": f"/shop/{name.replace('/', '_')}",
        "filter": {"comp_name": {"contains": value}} if value else {},
        "checked": checked,
    }
    note = audience_note_html(params, len(checked), keyword)
    assert set(_TAG.findall(note)) <= {"<b>", "</b>", "<br>"}, note
    words = campaign.audience_words(params)
    if checked:
        assert f"チェックした会員 {len(checked):,}件" in words
        shown = words.rsplit("会員ID ", 1)[1]
        assert shown.count("、") == min(len(checked), 10) - 1
        assert ("ほか" in shown) == (len(checked) > 10)
        assert "会員IDで決まっています" in note
    elif not value:
        assert "検索結果すべて" in words


def test_members_not_from_a_file_cannot_be_scheduled(shop: Callable[..., Shop]) -> None:
    """A frame handed to the wizard has no file to read again at send time: said, not stored."""
    from bcartnb.members import read_members

    s = shop(2)
    frame = read_members(s.path / "members.csv")
    frame.attrs.clear()
    w = Wizard(frame, s.settings)
    confirmed(w)
    said = schedule_at(w, dt.date(2026, 12, 10), "09:00")
    assert "予約するには会員ファイルから読み込んだ会員が必要です" in said
    assert campaign.scheduled_campaigns(s.settings) == []
