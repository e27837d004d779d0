"""Did the mail work, and the next step (issue 25): results, breakdowns, segments, follow-ups.

A campaign is sent with the command line into the test SMTP server; the members' clicks and
opens reach a real uvicorn tracking server (the public server's app, as in
``test_tracking.py``) by real HTTP requests; then ``bcartnb results`` (text, JSON, CSV),
``bcartnb members --results`` and a follow-up campaign with ``results = "ID"`` read what was
counted. A hypothesis property holds the counts to the events, whatever their order.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import random
import re
import socket
import subprocess
import sys
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import test_tracking as tt
from hypothesis import given
from hypothesis import settings as hsettings
from hypothesis import strategies as st
from smtp_servers import Faults
from test_cli_run import ADMIN, env_for, member_mails, setup_campaign
from test_ledger import NOW, members, new_campaign, send_all

from bcartnb.campaign import campaign_breakdown, check_results_filter, members_with_results
from bcartnb.exceptions import FilterError
from bcartnb.hygiene.tracking_server import Tracker
from bcartnb.ledger import Ledger, fingerprint
from bcartnb.settings import load_settings

listening = tt.listening
server = tt.server

#: 会員ID → (都道府県, 価格グループID); 1006 is never mailed (a bad address)
MEMBERS = {
    1001: ("東京都", 1),
    1002: ("東京都", 2),
    1003: ("大阪府", 1),
    1004: ("大阪府", 2),
    1005: ("北海道", 1),
}
SCANNER = "Mozilla/5.0 (compatible; Barracuda Sentinel)"


#: 1005's company name is a formula to a spreadsheet: the CSV must keep it text
FORMULA = '=HYPERLINK("https://evil.example/","開く")'


def _members_csv(path: Path) -> None:
    names = {mid: f"結果商事{mid}" for mid in MEMBERS} | {
        1005: '"' + FORMULA.replace('"', '""') + '"'
    }
    rows = "".join(
        f"{mid},{names[mid]},山田,太郎,user{mid}@example.co.jp,{pref},{group},受け取る\n"
        for mid, (pref, group) in MEMBERS.items()
    )
    path.write_text(
        "会員ID,会社名,担当者(姓),担当者(名),メールアドレス,都道府県,価格グループID,メール案内\n"
        + rows
        + "1006,不正商事,田中,一,bad address@example.co.jp,東京都,1,受け取る\n",
        encoding="utf-8",
    )


@pytest.fixture
def shop(tmp_path: Path, smtp_server: Any, listening: socket.socket) -> tt.Shop:
    """test_tracking's shop (an HTML mail with two tracked links), with five members in
    three 都道府県 and two 価格グループ, and names for the groups."""
    smtp = smtp_server()
    campaign = setup_campaign(tmp_path, 1)
    _members_csv(tmp_path / "members.csv")
    tt.write_campaign(campaign, tt.BODY)
    base = f"http://127.0.0.1:{listening.getsockname()[1]}/t"
    config = tmp_path / "bcartnb.toml"
    config.write_text(
        config.read_text("utf-8")
        + f'unsubscribe_url = "{tt.UNSUB}"\n[tracking]\nurl = "{base}"\n'
        + '[names.price_groups]\n1 = "一般"\n2 = "卸A"\n',
        "utf-8",
    )
    env = env_for(tmp_path, smtp) | {"BCARTNB_UNSUBSCRIBE_SECRET": tt.SECRET}
    return tt.Shop(tmp_path, env, smtp, campaign, base)


def links_of(shop: tt.Shop, mid: int) -> tuple[list[str], str]:
    html = tt.parts(tt.mail_to(shop, f"user{mid}@example.co.jp"))[1]
    image = re.findall(re.escape(shop.base) + r"/o/[A-Za-z0-9_-]+", html)[0]
    return tt.tracked(shop, html), image


def respond(shop: tt.Shop, server: Tracker) -> None:
    """1001 clicks the sale link twice (no image shown); 1002 opens; 1003's gateway fetches
    the image and a link (a machine: 1003 did not open); 1004 and 1005 do nothing."""
    sale = links_of(shop, 1001)[0][0]
    for _ in range(2):
        assert tt.get(sale).status_code == 302
    _, image = links_of(shop, 1002)
    assert tt.get(image).status_code == 200
    links3, image3 = links_of(shop, 1003)
    sale3 = links3[0]
    assert tt.get(image3, agent=SCANNER).status_code == 200
    assert tt.get(sale3, method="HEAD").status_code == 302
    assert server.writer.flush()  # the server records in batches: every response is in


def sendable(shop: tt.Shop, cid: str, flt: str) -> int:
    """``bcartnb members --results ID --filter FLT``'s 送信件数."""
    out = cli(shop, "members", "members.csv", "--results", cid, "--filter", flt, "--json")
    return int(json.loads(out.stdout)["sendable"])


def cli(shop: tt.Shop, *args: str) -> Any:
    out = tt.bcartnb(*args, env=shop.env, cwd=shop.tmp)
    assert out.returncode == 0, out.stderr
    return out


# --- bcartnb results --------------------------------------------------------------------------


def test_results_json_text_and_breakdowns_count_people_not_machines(
    shop: tt.Shop, server: Tracker
) -> None:
    cid = tt.send(shop)
    respond(shop, server)
    got = tt.results(shop, cid)
    assert (got["delivered"], got["opened"], got["clicked"], got["clicks"]) == (5, 2, 1, 2)
    assert (got["open_rate"], got["click_rate"]) == (0.4, 0.2)
    assert got["machine"] == {"opens": 1, "clicks": 1}
    assert got["measured"] == {"opens": True, "clicks": True}
    by_pref = {r["group"]: r for r in got["by_pref"]}
    assert by_pref["東京都"] == {
        "group": "東京都",
        "delivered": 2,
        "opened": 2,
        "clicked": 1,
        "open_rate": 1.0,
        "click_rate": 0.5,
    }
    # 1003's image was fetched by a machine only: not opened
    assert (by_pref["大阪府"]["opened"], by_pref["大阪府"]["delivered"]) == (0, 2)
    groups = {
        r["group"]: (r["delivered"], r["opened"], r["clicked"]) for r in got["by_price_group"]
    }
    assert groups == {"1: 一般": (3, 1, 1), "2: 卸A": (2, 1, 0)}
    # over time: every person who responded is in exactly one bucket, hour by hour
    assert sum(r["opened"] for r in got["over_time"]) == 2
    assert sum(r["clicked"] for r in got["over_time"]) == 1
    assert got["over_time"][0]["label"] == "0〜1時間後"
    # the server's clock is an hour ahead (test_tracking.later): every response is 1-2 h after
    assert [r["label"] for r in got["over_time"] if r["opened"]] == ["1〜2時間後"]
    text = cli(shop, "results", cid).stdout
    assert "開封数: 2人（開封率 40.0%）" in text and "クリック数: 1人（クリック率 20.0%" in text
    assert "都道府県別" in text and "東京都: 2件  開封率 100.0%  クリック率 50.0%" in text
    assert "1: 一般: 3件" in text and "1〜2時間後: 開封 2人  クリック 1人" in text
    assert "Apple メールのプライバシー保護" in text and "機械だけが開いた会員" in text


def test_results_csv_by_link_and_by_member_open_in_excel(shop: tt.Shop, server: Tracker) -> None:
    cid = tt.send(shop)
    respond(shop, server)
    raw = tt.bcartnb("results", cid, "--csv", env=shop.env, cwd=shop.tmp)
    assert raw.returncode == 0, raw.stderr
    assert raw.stdout.startswith("\ufeff")  # Excel takes the file as UTF-8 only with it
    rows = list(csv.DictReader(io.StringIO(raw.stdout.lstrip("\ufeff"))))
    assert [(r["リンク番号"], r["URL"], r["クリック人数"], r["のべクリック数"]) for r in rows] == [
        ("1", tt.SALE, "1", "2"),
        ("2", tt.NEW, "0", "0"),
    ]
    assert rows[0]["クリック率"] == "0.2" and rows[0]["機械のクリック数"] == "1"
    members = tt.bcartnb("results", cid, "--csv", "--by", "member", env=shop.env, cwd=shop.tmp)
    assert members.returncode == 0, members.stderr
    table = {r["会員ID"]: r for r in csv.DictReader(io.StringIO(members.stdout.lstrip("\ufeff")))}
    assert sorted(table) == ["1001", "1002", "1003", "1004", "1005"]
    assert (table["1001"]["開封"], table["1001"]["クリック"], table["1001"]["クリック回数"]) == (
        "はい",
        "はい",
        "2",
    )
    assert (table["1003"]["開封"], table["1003"]["機械の開封回数"]) == ("いいえ", "1")
    assert table["1002"]["価格グループ"] == "2: 卸A" and table["1005"]["都道府県"] == "北海道"
    assert table["1004"]["最初の開封"] == "" and table["1002"]["最初の開封"].startswith("20")
    assert table["1005"]["会社名"] == "'" + FORMULA  # shown as text, never run


def test_results_of_an_unknown_campaign_is_one_line_exit_2(shop: tt.Shop) -> None:
    tt.send(shop)
    out = tt.bcartnb("results", "20990101-000000-abcdef", env=shop.env, cwd=shop.tmp)
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert len(out.stderr.strip().splitlines()) == 1


HOSTILE = "https://shop.example.co.jp/x?m=$1$&amp;t=&lt;script&gt;"


def test_the_report_has_the_open_and_click_section_with_its_limits_and_chart(
    shop: tt.Shop, server: Tracker
) -> None:
    """``bcartnb report``: the marketer's words, the numbers the events made, the limits
    beside them, a chart; a URL from the template is text (escaped, no mathtext)."""
    tt.write_campaign(shop.campaign, tt.BODY + f'<p><a href="{HOSTILE}">特価</a></p>')
    cid = tt.send(shop)
    respond(shop, server)
    links, _ = links_of(shop, 1004)
    assert tt.get(links[2]).status_code == 302  # the hostile link, by a person
    assert server.writer.flush()
    out = shop.tmp / "report.html"
    cli(shop, "report", cid, "--out", str(out))
    page = out.read_text("utf-8")
    section = page[page.index("<h2>開封・クリック</h2>") :]
    for words in ("配信数", "開封数・開封率", "クリック数・クリック率", "機械によるアクセス"):
        assert words in section
    cells = re.findall(r"<td[^>]*>([^<]*)</td>", section)
    assert cells[:3] == ["5件", "3人（60.0%）", "2人（40.0%）"]
    assert "Apple メールのプライバシー保護" in section
    assert "テキストメールは数えられません" in section
    assert "<h3>都道府県別</h3>" in section and "<h3>価格グループ別</h3>" in section
    assert "2: 卸A" in section and tt.SALE in section
    assert "&lt;script&gt;" in section and "<script>" not in page  # the URL is text
    assert section.count("<img") >= 1
    # and the JSON agrees: 1001 (sale) and 1004 (the hostile link) clicked
    got = tt.results(shop, cid)
    assert (got["opened"], got["clicked"]) == (3, 2)


# --- the next step: segments from results -------------------------------------------------


def follow_up(shop: tt.Shop, cid: str, flt: str, name: str = "follow.toml") -> Path:
    path = shop.tmp / name
    path.write_text(
        'members = "members.csv"\nsubject = "再送: ご覧になりましたか"\n'
        'body = "{{ 会社名 }} 様\\n先日のご案内をもう一度お送りします。\\n"\n'
        f'results = "{cid}"\nfilter = {flt}\n',
        "utf-8",
    )
    return path


def test_a_follow_up_reaches_exactly_the_non_openers_once(shop: tt.Shop, server: Tracker) -> None:
    cid = tt.send(shop)
    respond(shop, server)
    before = member_mails(shop.smtp)
    assert sum(before.values()) == 5
    # the same segment from the command line first: 1003 (a machine only), 1004, 1005
    assert sendable(shop, cid, '{"開封": false}') == 3
    campaign = follow_up(shop, cid, '{"開封" = false}')
    for _ in range(2):  # twice: the second run mails nobody again
        sent = tt.bcartnb("run", str(campaign), "--send", "--json", env=shop.env, cwd=shop.tmp)
        assert sent.returncode == 0, sent.stderr
    after = member_mails(shop.smtp) - before
    assert after == {f"user{m}@example.co.jp": 1 for m in (1003, 1004, 1005)}
    for m in (1003, 1004, 1005):  # a different mail: its own subject
        assert tt.mail_to(shop, f"user{m}@example.co.jp")["Subject"] == "再送: ご覧になりましたか"
    assert ADMIN not in after
    # 開封した会員 and リンクをクリックした会員 of the same campaign
    opened = cli(shop, "members", "members.csv", "--results", cid, "--filter", '{"開封": true}')
    assert (
        re.search(r"対象会員数\s+2 件", opened.stdout) and "絞込条件: 開封が はい" in opened.stdout
    )
    assert sendable(shop, cid, '{"クリック": true}') == 1


def test_the_follow_up_run_twice_at_once_mails_each_non_opener_once(
    shop: tt.Shop, server: Tracker
) -> None:
    cid = tt.send(shop)
    respond(shop, server)
    before = member_mails(shop.smtp)
    campaign = follow_up(shop, cid, '{"開封" = false}')
    command = [sys.executable, "-m", "bcartnb", "run", str(campaign), "--send", "--json"]
    runs = [
        subprocess.Popen(command, env=shop.env, cwd=shop.tmp, stdout=subprocess.PIPE, text=True)
        for _ in range(2)
    ]
    codes = sorted(p.wait(timeout=120) for p in runs)
    for p in runs:
        assert p.stdout is not None
        p.stdout.close()
    assert codes[0] == 0 and codes[1] in (0, 2), codes  # the other: refused, or nothing left
    assert member_mails(shop.smtp) - before == {
        f"user{m}@example.co.jp": 1 for m in (1003, 1004, 1005)
    }


def test_a_resumed_follow_up_sends_to_whom_its_first_run_claimed(
    shop: tt.Shop, server: Tracker
) -> None:
    """A non-opener whose follow-up was deferred, and who opens the first mail before the
    resume, still gets the follow-up once: the resume reads the results as of its start."""
    cid = tt.send(shop)
    respond(shop, server)
    config = shop.tmp / "bcartnb.toml"
    config.write_text(config.read_text("utf-8") + "[delivery]\nretries = 0\n", "utf-8")
    # 1004's next RCPT gets a 451 (its first, for the first mail, was the 1st)
    shop.smtp.set_faults(Faults(defer={"user1004@example.co.jp": 2}))
    before = member_mails(shop.smtp)
    campaign = follow_up(shop, cid, '{"開封" = false}')
    first = tt.bcartnb("run", str(campaign), "--send", "--json", env=shop.env, cwd=shop.tmp)
    assert first.returncode == 4, first.stderr  # unfinished: 1004 deferred
    follow_id = json.loads(first.stdout)["campaign_id"]
    _, image = links_of(shop, 1004)
    assert tt.get(image).status_code == 200  # 1004 opens the first mail now
    assert server.writer.flush()
    assert sendable(shop, cid, '{"開封": false}') == 2  # today's results: 1003 and 1005
    resumed = tt.bcartnb("resume", follow_id, "--json", env=shop.env, cwd=shop.tmp)
    assert resumed.returncode == 0, resumed.stderr
    assert member_mails(shop.smtp) - before == {
        f"user{m}@example.co.jp": 1 for m in (1003, 1004, 1005)
    }


def test_papermill_mails_the_non_openers_with_the_results_parameter(
    shop: tt.Shop, server: Tracker, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The campaign notebook takes ``results`` like the campaign file (the papermill face)."""
    import papermill

    from bcartnb.report import read_summary

    cid = tt.send(shop)
    respond(shop, server)
    before = member_mails(shop.smtp)
    for key, value in shop.env.items():
        if key.startswith("BCARTNB_"):
            monkeypatch.setenv(key, value)
    out = shop.tmp / "follow.ipynb"
    papermill.execute_notebook(
        str(Path(__file__).resolve().parent.parent / "notebooks" / "campaign.ipynb"),
        str(out),
        parameters={
            "members": str(shop.tmp / "members.csv"),
            "results": cid,
            "filter": {"開封": False},
            "subject": "まだご覧でない方へ",
            "body": "{{ 会社名 }} 様\nご案内をもう一度お送りします。\n",
            "send": True,
            "report_html": "",
        },
        kernel_name="python3",
        cwd=str(shop.tmp),
        progress_bar=False,
    )
    assert read_summary(out)["sent"] == 3
    assert member_mails(shop.smtp) - before == {
        f"user{m}@example.co.jp": 1 for m in (1003, 1004, 1005)
    }


def test_text_only_recipients_are_no_non_openers_unless_asked(
    shop: tt.Shop, server: Tracker
) -> None:
    shop.campaign.write_text(
        'members = "members.csv"\nsubject = "ご案内"\n'
        f'body = "セールはこちら {tt.SALE} です。\\n"\n',
        "utf-8",
    )
    cid = tt.send(shop)
    text = tt.mail_to(shop, "user1001@example.co.jp").get_content()
    (link,) = re.findall(re.escape(shop.base) + r"/c/[A-Za-z0-9_-]+", str(text))
    assert tt.get(link).status_code == 302
    assert server.writer.flush()
    got = tt.results(shop, cid)
    assert got["measured"] == {"opens": False, "clicks": True}
    assert any("テキストメール" in n for n in got["notes"])
    rows = cli(shop, "results", cid, "--csv", "--by", "member").stdout.lstrip("\ufeff")
    opened = {r["会員ID"]: r["開封"] for r in csv.DictReader(io.StringIO(rows))}
    assert opened == {
        "1001": "はい",
        "1002": "不明",
        "1003": "不明",
        "1004": "不明",
        "1005": "不明",
    }
    refused = tt.bcartnb(
        "members", "members.csv", "--results", cid, "--filter", '{"開封": false}',
        env=shop.env, cwd=shop.tmp,
    )  # fmt: skip
    assert refused.returncode == 2 and "テキストメール" in refused.stderr
    dry = tt.bcartnb(
        "run", str(follow_up(shop, cid, '{"開封" = false}')), env=shop.env, cwd=shop.tmp
    )
    assert dry.returncode == 2 and "テキストメール" in dry.stderr
    assert sendable(shop, cid, '{"クリック": false}') == 4
    assert sendable(shop, cid, '{"配信": true, "開封": [false, null]}') == 5  # asked for


def test_the_wizard_shows_the_rates_and_mails_the_non_openers(
    shop: tt.Shop, server: Tracker
) -> None:
    """配信履歴と結果: 開封率 and クリック率 per campaign; 配信結果で絞り込む → a new mail to
    開封しなかった会員, the same campaign a file with ``results = "ID"`` makes."""
    from bcartnb.widgets import Wizard

    cid = tt.send(shop)
    respond(shop, server)
    before = member_mails(shop.smtp)
    wizard = Wizard(shop.tmp / "members.csv", load_settings(env=shop.env))
    shown = wizard.results.table.value
    assert cid in shown and "5件" in shown and "40.0%" in shown and "20.0%" in shown
    assert wizard.table.result_count.value == "検索結果: 6件"
    wizard.results.campaign.value = cid
    wizard.results.who.value = "開封しなかった会員"
    wizard.results.use.click()
    assert wizard.status.kind != "error", wizard.status.value
    assert wizard.filter == {"開封": False}
    assert wizard.table.result_ids == [1003, 1004, 1005]  # 1003: only a machine opened
    _, image = links_of(shop, 1005)
    assert tt.get(image).status_code == 200  # 1005 opens now: 絞込 keeps what was read,
    assert server.writer.flush()
    wizard.filter_step.apply.click()
    assert wizard.table.result_ids == [1003, 1004, 1005]
    wizard.results.use.click()  # 配信結果で絞り込む reads the results again
    assert wizard.table.result_ids == [1003, 1004]
    wizard.send_all.click()
    assert wizard.stage == "compose", wizard.status.value
    wizard.compose.subject.value = "まだご覧でない方へ"
    wizard.compose.body.value = "{{ 会社名 }} 様\n先日のご案内です。\n"
    wizard.compose.to_confirm.click()
    assert wizard.stage == "confirm", wizard.status.value
    assert wizard.spec is not None and wizard.spec.results == cid
    wizard.confirm.send.click()
    assert wizard.stage == "done", wizard.status.value
    assert member_mails(shop.smtp) - before == {f"user{m}@example.co.jp": 1 for m in (1003, 1004)}
    # 使わない: every member again, the results columns gone
    wizard.results.campaign.value = None
    wizard.results.use.click()
    assert wizard.table.result_count.value == "検索結果: 6件" and "開封" not in wizard.members


# --- the property -------------------------------------------------------------------------

EVENT = st.tuples(
    st.integers(1, 6),  # member (6 is not in the campaign: no journal row)
    st.integers(0, 3),  # link (0: the open image)
    st.booleans(),  # machine
)


@hsettings(max_examples=60, deadline=None)
@given(events=st.lists(EVENT, max_size=25), rnd=st.randoms(use_true_random=False))
def test_counts_depend_on_the_events_not_their_order_or_repeats(
    events: list[tuple[int, int, bool]], rnd: random.Random
) -> None:
    def counted(order: list[tuple[int, int, bool]]) -> tuple[Any, ...]:
        with contextlib.closing(Ledger.in_memory(clock=lambda: NOW)) as led:
            cid = new_campaign(led, 5, cid="20261127-143000-abcdef")
            led.reserve(cid, 5, "light")
            send_all(led, cid)
            led.record_links(cid, ["https://a.example/1", "https://a.example/2"])
            # far apart in time: the burst rule (2 s) never joins two of them; an hour after
            # delivery, so none is a gateway's scan at delivery (DELIVERY_SECONDS)
            for i, (member, link, machine) in enumerate(order):
                kind = "open" if link == 0 else "click"
                at = NOW + timedelta(hours=1, minutes=i)
                led.record_track(cid, member, link, kind, machine=machine, now=at)
            t = led.track_results(cid)
            got = led.member_responses(cid)
            rows = {
                int(m): (bool(o), bool(c))
                for m, o, c in zip(got["member_id"], got["opened"], got["clicked"], strict=True)
            }
        return (t.opened, t.clicked, t.clicks, t.machine_opens, t.machine_clicks), rows

    shuffled = list(events)
    rnd.shuffle(shuffled)
    doubled = [e for e in events for _ in range(2)]
    base = counted(events)
    assert counted(shuffled) == base
    people = {(m, link) for m, link, machine in events if not machine and m <= 5}
    rows = base[1]
    assert {m for m, (o, _) in rows.items() if o} == {m for m, _ in people if m <= 5} & set(rows)
    assert {m for m, (_, c) in rows.items() if c} == {m for m, link in people if link > 0}
    again = counted(doubled)
    assert again[1] == rows and again[0][:2] == base[0][:2]
    assert again[0][2] == 2 * base[0][2]  # every request counts in のべ


@hsettings(max_examples=200, deadline=None)
@given(hours=st.lists(st.floats(0, 24 * 40, allow_nan=False), max_size=50))
def test_every_response_falls_in_exactly_its_bucket_of_time(hours: list[float]) -> None:
    """Per hour for 48 hours, then per day: each first open lands in the one bucket that
    holds its hour, none is lost, none is counted twice."""
    import numpy as np

    from bcartnb.campaign.results import _buckets, _per_bucket

    buckets = _buckets(max(hours, default=-1.0))
    counts = _per_bucket(np.array(hours, dtype="float64"), len(buckets))
    assert int(counts.sum()) == len(hours)
    for i, (since, until) in enumerate(buckets):
        assert counts[i] == sum(since <= h < until for h in hours)
        assert until - since == (1 if since < 48 else 24)


def sent_campaign(led: Ledger, html: bool, cid: str = "20261127-143000-abcdef") -> str:
    claim = led.claim(
        fingerprint=fingerprint({"html": html}, members(3)),
        plan="light",
        params={"html": html, "members": "/nonexistent/members.csv"},
        recipients=members(3),
        campaign_id=cid,
    )
    led.reserve(cid, 3, "light")
    send_all(led, cid)
    led.record_links(cid, ["https://a.example/1"])
    return claim.campaign_id


@pytest.mark.parametrize("html", [True, False])
def test_members_with_results_marks_undelivered_and_unmeasured_as_blank(
    tmp_path: Path, html: bool
) -> None:
    """A member the campaign did not mail has 配信 False and blank 開封/クリック; a text mail's
    開封 is blank for everyone; the filter refuses a question nobody can answer."""
    import pandas as pd

    db = tmp_path / "ledger.sqlite3"
    settings = load_settings(env={"BCARTNB_DB": str(db), "BCARTNB_PLAN": "light"})
    with Ledger.open(db, clock=lambda: NOW) as led:
        cid = sent_campaign(led, html)
        later = NOW + timedelta(hours=1)  # not at delivery (a gateway's scan)
        kind = "open" if html else "click"
        led.record_track(cid, 2, 0 if html else 1, kind, machine=False, now=later)
        led.record_track(cid, 3, 0, "open", machine=True, now=later)  # a machine only
        frame = pd.DataFrame(
            {"id": [1, 2, 3, 4], "email": ["a@x.jp", "b@x.jp", "c@x.jp", "d@x.jp"]}
        )
        got = members_with_results(frame, cid, settings, ledger=led)
        found = campaign_breakdown(settings, cid, ledger=led)
    assert got["配信"].tolist() == [True, True, True, False]
    opened = [None if pd.isna(v) else bool(v) for v in got["開封"]]
    clicked = [None if pd.isna(v) else bool(v) for v in got["クリック"]]
    assert opened == ([False, True, False, None] if html else [None] * 4)
    assert clicked == [False, not html, False, None]
    assert found.totals.opened == 1 and found.opens_measured is html
    assert any("会員ファイル" in n for n in found.notes)  # no breakdown, said so
    assert found.by("pref").empty
    if html:
        check_results_filter(got, {"開封": False})
    else:
        with pytest.raises(FilterError, match="開封"):
            check_results_filter(got, {"開封": False})
        check_results_filter(got, {"開封": [False, None], "配信": True})
