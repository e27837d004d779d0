"""The results where the marketer looks besides ``bcartnb results`` (issue 25): the send
history (``bcartnb campaigns``), the report of the run that just sent, and the per-link
figures, which never show the hidden link (:data:`~bcartnb.mailtokens.TRAP_LINK`).

Campaigns go through the test SMTP server; clicks and opens reach the real tracking server
(``test_results``'s shop and responses) by real HTTP requests.
"""

from __future__ import annotations

import csv
import io
import json
from typing import Any

import test_tracking as tt
from test_results import SCANNER, cli, respond, shop

from bcartnb import campaign, report
from bcartnb.hygiene.tracking_server import Tracker
from bcartnb.ledger import Ledger
from bcartnb.mailtokens import TRAP_LINK
from bcartnb.settings import load_settings

listening = tt.listening
server = tt.server
__all__ = ["listening", "server", "shop"]


def _history(shop: tt.Shop) -> tuple[dict[str, dict[str, Any]], str]:
    """``bcartnb campaigns --json`` by campaign id, and the text listing."""
    rows = json.loads(cli(shop, "campaigns", "--json").stdout)
    return {r["campaign_id"]: r for r in rows}, cli(shop, "campaigns").stdout


def _line_of(text: str, cid: str) -> str:
    (line,) = [x for x in text.splitlines() if x.startswith(cid)]
    return line


def test_campaigns_lists_the_rates_per_campaign_and_a_dash_where_not_measured(
    shop: tt.Shop, server: Tracker
) -> None:
    measured = tt.send(shop)
    respond(shop, server)  # 1001 clicks, 1002 opens, 1003's gateway: a machine; 5 delivered
    shop.campaign.write_text(  # another mail (subject), not measured
        shop.campaign.read_text("utf-8").replace("ご案内", "ご案内その2") + "track = false\n",
        "utf-8",
    )
    unmeasured = tt.send(shop)
    rows, text = _history(shop)
    got = rows[measured]
    assert (got["opened"], got["open_rate"], got["clicked"], got["click_rate"]) == (
        2,
        0.4,
        1,
        0.2,
    )
    assert got["sent"] == 5 and {"campaign_id", "created_at", "status", "failed"} <= set(got)
    off = rows[unmeasured]
    assert off["sent"] == 5  # sent, yet nothing known: null, never a 0 that reads as 0%
    assert (off["opened"], off["open_rate"], off["clicked"], off["click_rate"]) == (None,) * 4
    header = text.splitlines()[0]
    assert "開封率" in header and "クリック率" in header
    assert _line_of(text, measured).split()[-2:] == ["40.0%", "20.0%"]
    assert _line_of(text, unmeasured).split()[-2:] == ["—", "—"]
    assert "機械のアクセスは含めません" in text
    # a later click moves the listing: it reads the ledger, not a copy
    first_mail = tt.parts(tt.mail_to(shop, "user1004@example.co.jp", 0))[1]
    assert tt.get(tt.tracked(shop, first_mail)[1]).status_code == 302
    assert server.writer.flush()
    rows, text = _history(shop)
    assert (rows[measured]["clicked"], rows[measured]["click_rate"]) == (2, 0.4)
    assert _line_of(text, measured).split()[-2:] == ["60.0%", "40.0%"]


# --- the report of the run that just sent ------------------------------------------------


def _run_report(shop: tt.Shop, extra: str = "") -> tuple[str, str]:
    """Send the shop's campaign in process as the papermill notebook does, and return its
    report (``from_run``) as HTML and as plain text."""
    if extra:
        shop.campaign.write_text(shop.campaign.read_text("utf-8") + extra, "utf-8")
    settings = load_settings(env=shop.env)
    spec = campaign.load_campaign(shop.campaign)
    ran = campaign.run(spec, settings, send=True, progress=False)
    assert ran.plan is not None and ran.summary.sent == 5
    doc = report.from_run(ran.plan, ran.summary, {}, ledger_usage={})
    blocks = report.report_blocks(doc)
    html = "".join(b.get("text/html", "") for b in blocks)
    plain = "\n".join(b.get("text/plain", "") for b in blocks)
    return html, plain


def test_the_report_after_a_measured_send_says_where_the_results_will_be(shop: tt.Shop) -> None:
    html, plain = _run_report(shop)
    with Ledger.open(shop.tmp / "ledger.sqlite3") as led:
        ((cid, *_),) = led.campaigns().itertuples(index=False)
    words = f"開封・クリックは bcartnb results {cid} / bcartnb report {cid} で見られます。"
    assert words in plain and "開封・クリック" in html
    assert plain.count("開封・クリック") == 2  # the heading and the sentence, no figures
    assert "開封率" not in plain


def test_the_report_after_an_unmeasured_send_says_nothing_of_results(shop: tt.Shop) -> None:
    html, plain = _run_report(shop, "track = false\n")
    assert "開封・クリック" not in plain and "bcartnb results" not in plain
    assert "開封・クリック" not in html


def test_the_report_of_a_dry_run_says_nothing_of_results(shop: tt.Shop) -> None:
    settings = load_settings(env=shop.env)
    ran = campaign.run(campaign.load_campaign(shop.campaign), settings, send=False)
    assert ran.plan is not None and ran.summary.dry_run
    doc = report.from_run(ran.plan, ran.summary, {}, ledger_usage={})
    plain = "\n".join(b.get("text/plain", "") for b in report.report_blocks(doc))
    assert "bcartnb results" not in plain and "開封・クリック" not in plain


# --- the hidden link is never a link row ---------------------------------------------------


def test_the_hidden_link_is_no_link_row_in_any_face(shop: tt.Shop, server: Tracker) -> None:
    """Gateways fetch the hidden link of 1003's and 1004's mails (a person's click on it too:
    nobody can see it, so only a machine does): the per-link CSV, text and JSON list the
    mail's two links and nothing else; the fetches are counted as machine clicks."""
    cid = tt.send(shop)
    respond(shop, server)
    for mid in (1003, 1004):
        html = tt.parts(tt.mail_to(shop, f"user{mid}@example.co.jp"))[1]
        trap = tt.hidden(shop, html)
        assert tt.get(trap, agent=SCANNER).status_code == 204
        assert tt.get(trap).status_code == 204
    assert server.writer.flush()
    assert any(link == TRAP_LINK for _, link, *_ in tt.events(shop))  # recorded, apart
    got = tt.results(shop, cid)
    assert [x["number"] for x in got["links"]] == [1, 2]
    assert got["machine"]["clicks"] >= 1 + 4  # 1003's HEAD on the sale link, four trap hits
    assert (got["opened"], got["clicked"]) == (2, 1)  # nobody became a person by it
    raw = cli(shop, "results", cid, "--csv").stdout
    rows = list(csv.DictReader(io.StringIO(raw.lstrip("\ufeff"))))
    assert [r["リンク番号"] for r in rows] == ["1", "2"]
    assert [r["URL"] for r in rows] == [tt.SALE, tt.NEW]
    text = cli(shop, "results", cid).stdout
    assert str(TRAP_LINK) not in text and "/c/" not in text
    assert str(TRAP_LINK) not in cli(shop, "results", cid, "--csv", "--by", "member").stdout


def test_a_link_table_holding_the_hidden_number_still_shows_no_such_row(shop: tt.Shop) -> None:
    """The ledger's read side holds the rule by itself: even a table that (by a bug
    elsewhere) recorded the hidden number lists only the mail's own links."""
    cid = tt.send(shop)
    with Ledger.open(shop.tmp / "ledger.sqlite3") as led:
        led.record_links(cid, [f"https://shop.example.co.jp/p{i}" for i in range(TRAP_LINK)])
        numbers = [x.number for x in led.track_results(cid).links]
    assert numbers[:2] == [1, 2] and TRAP_LINK not in numbers
    assert len(numbers) == TRAP_LINK - 1
