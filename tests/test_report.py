"""The report's building blocks: masking, tables, charts (real PNGs, Japanese glyphs), summary."""

from __future__ import annotations

import csv
import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from html.parser import HTMLParser
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import nbformat
import pandas as pd
import papermill
import pytest
from browser_support import launch_chromium
from nbconvert import HTMLExporter
from nbformat.v4 import new_code_cell, new_notebook, new_output
from playwright.sync_api import sync_playwright
from smtp_servers import Faults

from bcartnb import report
from bcartnb.audience import REASON_LABELS, REASONS
from bcartnb.campaign import CampaignSpec, plan_campaign
from bcartnb.delivery import dry_run
from bcartnb.exceptions import BcartnbError
from bcartnb.members import read_members
from bcartnb.settings import Settings

PNG = b"\x89PNG\r\n\x1a\n"
CAMPAIGN = Path(__file__).resolve().parent.parent / "notebooks" / "campaign.ipynb"


def test_mask_text_masks_every_address_and_keeps_the_rest():
    text = "宛先 taro@example.co.jp, CC hanako.y+x@shop.example.com です。"
    masked = report.mask_text(text)
    assert masked == "宛先 t***@example.co.jp, CC h***@shop.example.com です。"
    assert report.mask_text("アドレスなし") == "アドレスなし"


def test_mask_frame_masks_email_columns_only_and_keeps_blanks():
    frame = pd.DataFrame(
        {
            "id": [1, 2],
            "email": ["taro@example.co.jp", ""],
            "email_cc": [None, "cc@example.jp"],
            "comp_name": ["見本商事", "テスト"],
        }
    )
    out = report.mask_frame(frame)
    assert out["email"].tolist() == ["t***@example.co.jp", ""]
    assert out["email_cc"].tolist()[1] == "c***@example.jp"
    assert pd.isna(out["email_cc"].tolist()[0])
    assert out["comp_name"].tolist() == ["見本商事", "テスト"]
    assert frame["email"].tolist()[0] == "taro@example.co.jp"  # the input is untouched


def test_parameters_table_drops_secret_keys_and_masks_addresses():
    table = report.parameters_table(
        {
            "template": "HTMLニュースレター",
            "body": "ご質問は info@example.co.jp まで",
            "filter": {"都道府県": ["東京都"]},
            "checked": [],
            "send": False,
            "smtp_password": "hunter2",
            "api_token": "abc",
        }
    )
    assert list(table.index) == [
        "テンプレート",
        "メール本文",
        "絞込オプション",
        "チェックした会員",
        "送信する",
    ]
    assert table.loc["メール本文", "値"] == "ご質問は i***@example.co.jp まで"
    assert table.loc["絞込オプション", "値"] == '{"都道府県": ["東京都"]}'
    assert table.loc["送信する", "値"] == "いいえ"
    assert "hunter2" not in table.to_string()


def test_reasons_table_in_decision_order_with_japanese_labels_and_zeros():
    table = report.reasons_table({"invalid_address": 3, "duplicate_address": 1})
    assert list(table.index) == [REASON_LABELS[r] for r in REASONS]
    assert table["件数"].tolist() == [0, 3, 0, 0, 1]


def test_counts_and_quota_tables():
    summary = {"selected": 10, "sendable": 8, "unsendable": 2, "sent": 7, "failed": 1}
    counts = report.counts_table(summary)
    assert counts["件数"].to_dict() == {
        "対象の会員": 10,
        "送信件数": 8,
        "送信できない件数": 2,
        "送信済み": 7,
        "失敗": 1,
    }
    quota = report.quota_table(
        {"plan": "プラン10", "month": "2026-11", "cap": 2000, "used_before": 5, "used_after": 13}
    )
    assert quota.loc["メール配信上限数（月）", "値"] == "2,000"
    assert quota.loc["残り（送信後）", "値"] == "1,987"
    uncapped = report.quota_table(
        {"plan": "自社SMTP", "month": "2026-11", "cap": None, "used_before": 0, "used_after": 4}
    )
    assert uncapped.loc["メール配信上限数（月）", "値"] == "上限なし"
    assert "残り（送信後）" not in uncapped.index


def test_usage_chart_is_a_png_and_japanese_renders_without_glyph_warnings():
    # filterwarnings=error: a missing Japanese glyph would fail this test
    png = report.usage_chart(
        {"20261101-090000-aaaaaa": 120, "20261115-090000-bbbbbb": 300},
        2000,
        "2026-11",
        current="20261115-090000-bbbbbb",
    )
    assert png.startswith(PNG)
    empty = report.usage_chart({}, None, "2026-11")
    assert empty.startswith(PNG)
    assert empty != png


def test_breakdown_chart_counts_prefectures():
    members = pd.DataFrame({"pref": ["東京都", "大阪府", "東京都", None]})
    png = report.breakdown_chart(members, "pref")
    assert png.startswith(PNG)
    # a column the file does not have is a chart saying 該当なし, not an error
    assert report.breakdown_chart(members, "price_group_id").startswith(PNG)


def test_resolve_members_defaults_to_the_demo_file_from_any_cwd(tmp_path: Path):
    demo = report.resolve_members(None)
    assert demo == report.demo_path("demo_members.csv")
    assert demo.is_file()
    assert report.resolve_members("m.csv") == Path.cwd().resolve() / "m.csv"
    assert report.resolve_members(str(tmp_path / "x.csv")) == tmp_path / "x.csv"


def _notebook_with(tmp_path: Path, *outputs: dict[str, object]) -> Path:
    cell = new_code_cell("x = 1")
    cell.outputs = [new_output("display_data", data=data) for data in outputs]
    path = tmp_path / "out.ipynb"
    nbformat.write(new_notebook(cells=[cell]), path)
    return path


def test_read_summary_reads_the_last_recorded_summary(tmp_path: Path):
    path = _notebook_with(
        tmp_path,
        {report.SUMMARY_MIMETYPE: {"sent": 1}, "text/plain": "{}"},
        {"text/plain": "other"},
        {report.SUMMARY_MIMETYPE: {"sent": 2}, "text/plain": "{}"},
    )
    assert report.read_summary(path) == {"sent": 2}


def test_read_summary_errors_name_the_file(tmp_path: Path):
    with pytest.raises(BcartnbError, match=r"no campaign summary recorded"):
        report.read_summary(_notebook_with(tmp_path, {"text/plain": "x"}))
    with pytest.raises(BcartnbError, match=r"missing\.ipynb: notebook not found"):
        report.read_summary(tmp_path / "missing.ipynb")
    bad = tmp_path / "bad.ipynb"
    bad.write_text("{", encoding="utf-8")
    with pytest.raises(BcartnbError, match=r"bad\.ipynb: not a notebook"):
        report.read_summary(bad)


def test_record_summary_masks_warnings_and_is_json(capsys: pytest.CaptureFixture[str]):
    data = report.record_summary(
        {"campaign_id": "c1", "warnings": ["member 3 taro@example.co.jp: long line"]}
    )
    assert data["warnings"] == ["member 3 t***@example.co.jp: long line"]
    json.dumps(data)
    assert "taro@" not in capsys.readouterr().out


def test_sample_mail_is_the_first_sendable_member_masked(tmp_path: Path):
    members = tmp_path / "m.csv"
    members.write_text(
        "会員ID,会社名,担当者(姓),担当者(名),メールアドレス,都道府県,メール案内\n"
        "1,空欄商事,山田,太郎,,東京都,受け取る\n"
        "2,見本商事,佐藤,花子,hanako@example.co.jp,大阪府,受け取る\n",
        encoding="utf-8",
    )
    spec = CampaignSpec.from_mapping(
        {
            "members": str(members),
            "subject": "{{ 会社名 }} 様",
            "body": "{{ 担当者名 }} 様 ({{ メールアドレス }})\n",
        }
    )
    settings = Settings(plan="プラン10", from_addr="shop@example.co.jp", db=tmp_path / "l.db")
    plan = plan_campaign(spec, settings, members=read_members(members))
    sample = report.sample_mail(plan)
    assert sample is not None
    assert sample["member_id"] == "2"
    assert sample["to"] == "h***@example.co.jp"
    assert sample["subject"] == "見本商事 様"
    assert "h***@example.co.jp" in sample["text"]
    assert "hanako@" not in json.dumps(sample, ensure_ascii=False)


# --- escaping (issue 12) ------------------------------------------------------------------

NASTY = [
    "<script>document.title='PWNED'</script>株式会社",
    '"><img src=x onerror=alert(1)>',
    "[x](javascript:alert(1))",
    "![](http://evil/)",
    "</iframe><script>alert(1)</script>",
    "& &amp; &#60; $\\href{javascript:alert(1)}{x}$",
]


class _Tags(HTMLParser):
    """The elements and attributes a browser would build from a fragment, and its text."""

    def __init__(self, source: str) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.text: list[str] = []
        self.feed(source)
        self.close()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))

    def handle_data(self, data: str) -> None:
        self.text.append(data)


@pytest.mark.parametrize("value", NASTY)
def test_html_table_shows_every_value_as_text(value: str):
    frame = pd.DataFrame({"値": [value], value: ["x"]}, index=pd.Index([value], name=value))
    parsed = _Tags(report.html_table(frame))
    assert {tag for tag, _ in parsed.tags} <= {"table", "thead", "tbody", "tr", "th", "td"}
    assert all(set(attrs) <= {"class", "style"} for _, attrs in parsed.tags)
    assert "".join(parsed.text).count(value) == 4  # index and column headers, row label, cell


def test_html_table_keeps_long_values_whole_and_blanks_blank():
    long = "本文" * 200
    parsed = _Tags(report.html_table(pd.DataFrame({"値": [long, None]}, index=["a", "b"])))
    assert long in parsed.text and "None" not in parsed.text and "nan" not in parsed.text


@pytest.mark.parametrize("value", NASTY)
def test_mail_frame_is_one_sandboxed_iframe_holding_the_mail(value: str):
    mail = f"<p>{value}</p><script>parent.document.title='PWNED'</script>"
    parsed = _Tags(report.mail_frame(mail))
    assert [tag for tag, _ in parsed.tags] == ["iframe"]  # the mail cannot close the attribute
    attrs = parsed.tags[0][1]
    assert attrs["sandbox"] == ""  # no allow-scripts, no allow-same-origin
    srcdoc = attrs["srcdoc"] or ""
    assert srcdoc.endswith(mail)  # the mail itself, unchanged, after the CSP
    assert "default-src 'none'" in srcdoc and "img-src data:" in srcdoc


@pytest.mark.parametrize("value", NASTY)
def test_sample_mail_html_escapes_subject_text_and_ids(value: str):
    sample = {"member_id": value, "to": "t***@example.co.jp", "subject": value, "text": value}
    parsed = _Tags(report.sample_mail_html(sample))
    assert {tag for tag, _ in parsed.tags} <= {"p", "br", "b", "pre"}
    assert "".join(parsed.text).count(value) == 3
    framed = _Tags(report.sample_mail_html({**sample, "html": f"<p>{value}</p>"}))
    assert [tag for tag, _ in framed.tags if tag not in {"p", "br", "b", "pre"}] == ["iframe"]


def test_show_report_sections_are_escaped_html_with_a_plain_text_twin(tmp_path: Path):
    members = tmp_path / "m.csv"
    members.write_text(
        "会員ID,会社名,担当者(姓),担当者(名),メールアドレス,メール案内\n"
        f'1,"{NASTY[0]}",山田,"{NASTY[2]}",taro@example.co.jp,受け取る\n',
        encoding="utf-8",
    )
    spec = CampaignSpec.from_mapping(
        {
            "members": str(members),
            "subject": "{{ 会社名 }} 様 {{ 担当者名 }}",
            "body": "{{ 会社名 }}\n",
            "filter": {"会社名": {"contains": "<script>"}},
        }
    )
    settings = Settings(plan="プラン10", from_addr="shop@example.co.jp", db=tmp_path / "l.db")
    plan = plan_campaign(spec, settings, members=read_members(members))
    summary = dry_run(plan)
    summary.warnings.append(NASTY[1])
    shown: list[dict[str, Any]] = []
    with _capture_display(shown):
        report.show_report(plan, summary, {"subject": spec.subject}, ledger_usage={})
    blocks = [b for b in shown if "text/html" in b]
    assert all(set(b) == {"text/html", "text/plain"} for b in blocks)
    allowed = {"div", "h2", "h3", "p", "br", "b", "code", "pre", "ul", "li"}
    allowed |= {"table", "thead", "tbody", "tr", "th", "td"}
    for block in blocks:
        parsed = _Tags(block["text/html"])
        assert {tag for tag, _ in parsed.tags} <= allowed, block["text/html"]
    html_text = "".join("".join(_Tags(b["text/html"]).text) for b in blocks)
    for value in (NASTY[0], NASTY[1], NASTY[2]):
        assert value in html_text
        assert value in "".join(b["text/plain"] for b in blocks)


def test_show_mail_keeps_a_fence_breaking_value_as_text_and_frames_the_html():
    value = "x\n```\n<script>alert(1)</script>\n```"
    shown: list[dict[str, Any]] = []
    with _capture_display(shown):
        report.show_mail(f"{value} taro@example.co.jp", f"<p>{value}</p>")
    (block,) = shown
    parsed = _Tags(block["text/html"])
    assert [t for t, _ in parsed.tags if t not in {"div", "p", "b", "pre"}] == ["iframe"]
    assert f"{value} t***@example.co.jp" in "".join(parsed.text)
    assert "taro@" not in block["text/html"] and "taro@" not in block["text/plain"]


@contextmanager
def _capture_display(into: list[dict[str, Any]]) -> Iterator[None]:
    """What show_report hands to IPython's display, without a kernel: the same objects."""
    from IPython import display as ipd

    real = ipd.display

    def keep(*objs: Any, **kwargs: Any) -> None:
        into.extend(o for o in objs if isinstance(o, dict))

    ipd.display = keep
    try:
        yield
    finally:
        ipd.display = real


# --- hostile values: a real report, exported and opened in Chromium (issue 12) -----------

HOSTILE_NAME = "<script>document.title='PWNED-'+document.cookie.length</script>株式会社"
HOSTILE_REPLY = (
    "550 5.7.1 <script>document.title='PWNED-SMTP'</script>"
    " [x](javascript:alert(1)) ![]({pixel}/reply.png)"
)
HOSTILE_BODY = (
    "<p>{{{{ 会社名 }}}} 様</p>"
    '<img src="{pixel}/mail.png">'
    "<script>document.title='PWNED-MAIL'</script>"
)
ADMIN = "admin@example.co.jp"
TAIL = ["メールアドレス", "メール案内"]
TAIL_1 = ["taro@example.co.jp", "受け取る"]


@pytest.fixture
def pixel_server() -> Iterator[tuple[str, list[str]]]:
    """A real HTTP server on 127.0.0.1 that records every request: a tracking pixel's host."""
    hits: list[str] = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            hits.append(self.path)
            self.send_response(204)
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", hits
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def _hostile_report(
    tmp_path: Path, smtp_server: Any, monkeypatch: pytest.MonkeyPatch, pixel: str
) -> Path:
    """The campaign notebook executed by papermill and exported to HTML by nbconvert, with a
    member whose 会社名 is a script and a server whose 550 reply (to the admin copy) is one."""
    reply = HOSTILE_REPLY.format(pixel=pixel)
    server = smtp_server(faults=Faults(reject={ADMIN}, reject_reply=reply))
    for key, value in server.env().items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("BCARTNB_CONFIG", str(report.demo_path("demo.toml")))
    monkeypatch.setenv("BCARTNB_DB", str(tmp_path / "ledger.sqlite3"))
    members = tmp_path / "members.csv"
    with members.open("w", encoding="utf-8", newline="") as f:
        writer = csv.writer(f)  # quotes what needs quoting: the values arrive as written
        writer.writerow(["会員ID", "会社名", "担当者(姓)", "担当者(名)", "担当部署", *TAIL])
        writer.writerow(
            [1, HOSTILE_NAME, "山田", "[x](javascript:alert(1))", f"![]({pixel}/dept.png)", *TAIL_1]
        )
        writer.writerow(
            [2, "見本商事", "佐藤", "花子", "営業部", "hanako@example.co.jp", "受け取る"]
        )
    out = tmp_path / "report.ipynb"
    papermill.execute_notebook(
        str(CAMPAIGN),
        str(out),
        parameters={
            "members": str(members),
            "template": "HTMLニュースレター",
            "body": HOSTILE_BODY.format(pixel=pixel),
            "filter": {"会社名": {"contains": "<script>"}},
            "send": True,
        },
        kernel_name="python3",
        cwd=str(tmp_path),
        progress_bar=False,
    )
    assert len(server.received) == 1  # the member got the mail; the admin copy was refused
    assert report.read_summary(out)["warnings"]  # the refusal's text is in the report
    body, _ = HTMLExporter().from_filename(str(out))
    exported = tmp_path / "report.html"
    exported.write_text(body, encoding="utf-8")
    return exported


@dataclass
class Dom:
    """What Chromium built from an exported notebook."""

    title: str
    scripts: list[str]
    links: list[str]
    images: list[str]
    text: str  # the visible text of the report's blocks
    sandbox: str | None  # the mail iframe's sandbox attribute
    mail_title: str | None
    mail_text: str


def _open_in_chromium(exported: Path, blocks: str = ".bcartnb-report") -> Dom:
    with sync_playwright() as pw:
        browser = launch_chromium(pw)
        try:
            page = browser.new_page()
            page.goto(exported.as_uri(), wait_until="load", timeout=60_000)
            mail = next((f for f in page.frames if f.parent_frame is not None), None)
            return Dom(
                title=page.title(),
                scripts=page.evaluate(
                    "() => [...document.querySelectorAll('script')].map(s => s.textContent)"
                ),
                links=page.evaluate(
                    "() => [...document.querySelectorAll('a[href]')].map(a => a.href)"
                ),
                images=page.evaluate("() => [...document.images].map(i => i.src)"),
                text="\n".join(page.locator(blocks).all_inner_texts()),
                sandbox=page.evaluate(
                    "() => document.querySelector('iframe.bcartnb-mail-html')"
                    "?.getAttribute('sandbox') ?? null"
                ),
                mail_title=mail.title() if mail else None,
                mail_text=mail.locator("body").inner_text() if mail else "",
            )
        finally:
            browser.close()


def _assert_nothing_ran(dom: Dom, pixel: str, hits: list[str]) -> None:
    assert not dom.title.startswith("PWNED"), dom.title
    assert not [s for s in dom.scripts if "PWNED" in s]  # no injected <script> element
    assert not [h for h in dom.links if h.startswith("javascript:")]
    assert not [src for src in dom.images if pixel in src]
    assert hits == []  # no request left the page for the pixel host, the mail's iframe included
    # the HTML mail: rendered, but sandboxed (no allow-scripts) and its own script never ran
    assert dom.sandbox == ""
    assert dom.mail_title is not None and not dom.mail_title.startswith("PWNED")


@pytest.mark.browser
@pytest.mark.timeout(240)
def test_exported_report_runs_no_script_from_a_member_a_template_or_a_server(
    tmp_path: Path,
    smtp_server: Any,
    monkeypatch: pytest.MonkeyPatch,
    pixel_server: tuple[str, list[str]],
):
    pixel, hits = pixel_server
    dom = _open_in_chromium(_hostile_report(tmp_path, smtp_server, monkeypatch, pixel))
    _assert_nothing_ran(dom, pixel, hits)
    assert HOSTILE_NAME in dom.text  # shown as the text it is, in the subject
    assert "<script>document.title='PWNED-SMTP'</script>" in dom.text  # the warning
    assert "[x](javascript:alert(1))" in dom.text  # Markdown syntax stays text
    assert "株式会社 様" in dom.mail_text


# A value that closes a Markdown code fence: CSV keeps the line breaks of a quoted field.
FENCE_BREAKER = "ACME\n```\n<script>document.title='PWNED-'+document.cookie.length</script>\n```"


@pytest.mark.browser
@pytest.mark.timeout(240)
@pytest.mark.parametrize("kind", ["text", "html"])
def test_exported_templates_notebook_runs_no_script_from_a_member_or_a_template(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    pixel_server: tuple[str, list[str]],
    kind: str,
):
    pixel, hits = pixel_server
    monkeypatch.setenv("BCARTNB_CONFIG", str(report.demo_path("demo.toml")))
    monkeypatch.setenv("BCARTNB_DB", str(tmp_path / "ledger.sqlite3"))
    folder = tmp_path / "templates"
    folder.mkdir()
    body = (
        "<p>{{ 会社名 }} 様</p><pre>{{ 担当部署 }}</pre>"
        f'<img src="{pixel}/template.png">'
        "<script>document.title='PWNED-TEMPLATE'</script>"
        if kind == "html"
        else "{{ 会社名 }} 様\n{{ 担当部署 }}\n"
    )
    (folder / "hostile.txt").write_text(
        f'+++\nsubject = "{{{{ 会社名 }}}} 様"\nhtml = {str(kind == "html").lower()}\n+++\n{body}',
        encoding="utf-8",
    )
    members = tmp_path / "members.csv"
    with members.open("w", encoding="utf-8", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["会員ID", "会社名", "担当部署", "担当者(姓)", "担当者(名)", *TAIL])
        writer.writerow([7, "ACME", FENCE_BREAKER, "山田", "太郎", *TAIL_1])
    out = tmp_path / "templates.ipynb"
    papermill.execute_notebook(
        str(CAMPAIGN.with_name("templates.ipynb")),
        str(out),
        parameters={"templates_dir": str(folder), "members": str(members), "template": "hostile"},
        kernel_name="python3",
        cwd=str(tmp_path),
        progress_bar=False,
    )
    body_html, _ = HTMLExporter().from_filename(str(out))
    exported = tmp_path / "templates.html"
    exported.write_text(body_html, encoding="utf-8")
    dom = _open_in_chromium(exported)
    if kind == "html":
        _assert_nothing_ran(dom, pixel, hits)
        assert "ACME" in dom.mail_text
    else:
        assert not dom.title.startswith("PWNED"), dom.title
        assert not [s for s in dom.scripts if "PWNED" in s]
        assert dom.sandbox is None  # a text mail has no HTML part to frame
    assert "<script>document.title='PWNED-'+document.cookie.length</script>" in dom.text
