"""The report on a phone and on paper, in headless Chromium (issue 23 item 9).

A real report (a dry run of a tall HTML mail to members with long values, written by the
notebook's own call) opened at 375 px: nothing sticks out of the page, no table cell is
narrower than two characters. Then printed: the framed mail gives way to its static copy,
whole, and the PDF has pages.
"""

from __future__ import annotations

import csv
import re
from pathlib import Path
from typing import Any

import pytest
from browser_support import launch_chromium
from playwright.sync_api import sync_playwright

from bcartnb import report
from bcartnb.campaign import CampaignSpec, plan_campaign
from bcartnb.delivery import dry_run
from bcartnb.settings import load_settings

pytestmark = pytest.mark.browser

LAST = "最後の段落です。ここまで印刷されます。"
BODY = (
    "<!DOCTYPE html><html><head><style>p{color:#333;margin:0 16px 12px}</style></head><body>"
    '<div style="max-width:600px;margin:0 auto">'
    "<p>{{ 会社名 }} {{ 担当者名 }} 様</p>"
    + "".join(f"<p>第{i}段落: 冬の新商品のカタログができました。</p>" for i in range(1, 61))
    + f"<p>{LAST}</p></div></body></html>"
)
LONG_NAME = "株式会社とても長い名前の会社でございますホールディングスグループ本社営業部" * 2


def _report(tmp_path: Path) -> Path:
    (tmp_path / "bcartnb.toml").write_text(
        'plan = "プラン10"\nfrom = "見本商事 <shop@example.co.jp>"\n'
        'admin = "admin@example.co.jp"\n',
        encoding="utf-8",
    )
    (tmp_path / "reports").mkdir()
    members = tmp_path / "members.csv"
    with members.open("w", encoding="utf-8", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["会員ID", "会社名", "担当者(姓)", "担当者(名)", "メールアドレス"])
        writer.writerow([1, "テスト商事", "山田", "太郎", "taro@member.co.jp"])
        for i in range(2, 12):  # unsendable, with values long enough to wrap
            writer.writerow([i, LONG_NAME, "鈴木", "一郎", f"bad address {i} " + "x" * 60])
    settings = load_settings(tmp_path / "bcartnb.toml", env={"BCARTNB_DB": str(tmp_path / "l.db")})
    spec = CampaignSpec.from_mapping(
        {
            "members": str(members),
            "subject": "{{ 会社名 }} 様 冬のご案内",
            "body": BODY,
            "html": True,
        }
    )
    plan = plan_campaign(spec, settings)
    summary = dry_run(plan)
    report.show_report(plan, summary, spec.to_params(), ledger_usage={})
    return tmp_path / "reports" / f"campaign-{summary.campaign_id}.html"


# Every element of the report that reaches past the page's right edge (or its left), except
# inside a table that scrolls sideways by itself; and every table cell narrower than two
# characters of its own font.
_LAYOUT = """() => {
  const width = document.documentElement.clientWidth;
  const scrolls = (el) => {
    for (let p = el.parentElement; p; p = p.parentElement) {
      const s = getComputedStyle(p);
      if ((s.overflowX === 'auto' || s.overflowX === 'scroll') && p.scrollWidth > p.clientWidth)
        return true;
    }
    return false;
  };
  const out = [];
  const narrow = [];
  for (const el of document.querySelectorAll('.bcartnb-report *')) {
    const r = el.getBoundingClientRect();
    if (!r.width || getComputedStyle(el).display === 'none') continue;
    if ((r.right > width + 1 || r.left < -1) && !scrolls(el))
      out.push(el.tagName + ' ' + Math.round(r.left) + '..' + Math.round(r.right));
    if (el.tagName === 'TD' || el.tagName === 'TH') {
      const em = parseFloat(getComputedStyle(el).fontSize);
      if (r.width < 2 * em) narrow.push(el.tagName + ' ' + r.width + ' ' + el.textContent);
    }
  }
  return {
    pageWidth: document.documentElement.scrollWidth, width, out, narrow,
    cells: document.querySelectorAll('.bcartnb-report td, .bcartnb-report th').length,
  };
}"""


@pytest.mark.timeout(300)
def test_the_report_on_a_phone_and_on_paper(tmp_path: Path) -> None:
    page_file = _report(tmp_path)
    with sync_playwright() as pw:
        browser = launch_chromium(pw)
        try:
            page = browser.new_page(viewport={"width": 375, "height": 800})
            requests: list[str] = []
            page.on("request", lambda r: requests.append(r.url))
            page.goto(page_file.as_uri(), wait_until="load", timeout=60_000)
            phone: dict[str, Any] = page.evaluate(_LAYOUT)
            assert phone["cells"] > 20
            assert phone["pageWidth"] <= 375, phone  # the page itself never scrolls sideways
            assert phone["out"] == [], phone["out"]
            assert phone["narrow"] == [], phone["narrow"]
            banner = page.locator(".bcartnb-banner")
            assert banner.is_visible() and report.DRY_RUN_BANNER in banner.inner_text()
            # on screen the HTML mail is the frame; its paper copy is hidden
            assert page.locator("iframe.bcartnb-mail-html").is_visible()
            assert not page.locator(".bcartnb-mail-print").is_visible()

            page.set_viewport_size({"width": 794, "height": 1123})  # A4 at 96 dpi
            page.emulate_media(media="print")
            paper: dict[str, Any] = page.evaluate(_LAYOUT)
            assert paper["out"] == [] and paper["narrow"] == [], paper
            assert not page.locator("iframe.bcartnb-mail-html").is_visible()
            copy = page.locator(".bcartnb-mail-print")
            assert copy.is_visible()
            text = copy.inner_text()
            assert "テスト商事 山田 太郎 様" in text and LAST in text  # whole, first to last
            clipped = copy.evaluate("el => el.scrollHeight > el.clientHeight + 1")
            assert not clipped
            pdf = page.pdf(format="A4", print_background=True)
            assert pdf.startswith(b"%PDF")
            pages = len(re.findall(rb"/Type\s*/Page(?![a-zA-Z])", pdf))
            assert pages >= 2  # the tall mail alone takes more than one sheet
            assert [u for u in requests if u != page_file.as_uri()] == []
        finally:
            browser.close()
