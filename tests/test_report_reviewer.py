"""A report a reviewer signs without questions (issue 23 item 9).

Real campaigns (a real SMTP server on 127.0.0.1, a real ledger file) written to real HTML
files, read back as a reviewer reads them: the subject as one member received it (their
personal values masked), the shop's own From, admin and signature addresses in clear and
every member's address masked, the parameters in Japanese words, a 確認用（未送信） banner on
a dry run only; the papermill notebook writes the page into the shop's ``reports/``; the
page at a phone's width and printed to PDF in headless Chromium.
"""

from __future__ import annotations

import csv
import os
import re
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import papermill
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_cli_run import bcartnb

from bcartnb import report
from bcartnb.campaign import CampaignSpec, plan_campaign, send
from bcartnb.delivery import dry_run
from bcartnb.exceptions import SettingsError
from bcartnb.hygiene.report import HYGIENE_TITLE, header
from bcartnb.privacy import mask_text, mask_values
from bcartnb.report.blocks import table
from bcartnb.report.printcopy import PRINT_CLASS, print_copy
from bcartnb.settings import Settings, load_settings

REPO = Path(__file__).resolve().parent.parent
CAMPAIGN = REPO / "notebooks" / "campaign.ipynb"
SHOP_TOML = """\
plan = "プラン10"
from = "見本商事オンラインショップ <shop@example.co.jp>"
admin = "admin@example.co.jp"
templates = "templates"
signature = \"\"\"
見本商事オンラインショップ
お問い合わせ: info@shop.example.co.jp
\"\"\"

[shop]
url = "https://shop.example.co.jp/"
"""
SUBJECT = "【見本商事】{{ 会社名 }} {{ 担当者名 }} 様 TEL {{ 電話番号 }} のご案内"
#: An HTML mail taller than the frame, so a print that kept the frame would cut it.
BODY = (
    "<p>{{ 会社名 }} {{ 担当者名 }} 様</p>"
    + "".join(f"<p>第{i}段落: 冬の新商品をご案内いたします。</p>" for i in range(1, 41))
    + "<p>ご登録のアドレス: {{ メールアドレス }}</p><p>最後の段落です。</p>"
)


def _members(path: Path) -> Path:
    with path.open("w", encoding="utf-8", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(
            [
                "会員ID",
                "会社名",
                "担当者(姓)",
                "担当者(名)",
                "電話番号",
                "メールアドレス",
                "都道府県",
            ]
        )
        writer.writerow(
            [3001, "テスト商事", "山田", "太郎", "03-1111-2222", "taro@member.co.jp", "東京都"]
        )
        writer.writerow(
            [3002, "見本物産", "佐藤", "花子", "06-3333-4444", "hanako@member.co.jp", "大阪府"]
        )
        writer.writerow([3003, "不正商事", "鈴木", "一郎", "", "not an address", "東京都"])
    return path


@pytest.fixture
def shop(tmp_path: Path) -> Path:
    """A shop folder as ``bcartnb init`` lays it out: settings, templates/, reports/."""
    (tmp_path / "bcartnb.toml").write_text(SHOP_TOML, encoding="utf-8")
    (tmp_path / "templates").mkdir()
    (tmp_path / "reports").mkdir()
    _members(tmp_path / "members.csv")
    return tmp_path


def _settings(shop: Path, server: Any) -> Settings:
    return load_settings(shop / "bcartnb.toml", env=server.env())


def _spec(shop: Path, **extra: Any) -> CampaignSpec:
    return CampaignSpec.from_mapping(
        {
            "members": str(shop / "members.csv"),
            "subject": SUBJECT,
            "body": BODY,
            "html": True,
            "filter": {"都道府県": ["東京都", "大阪府"]},
            **extra,
        }
    )


class _Text(HTMLParser):
    """The text a reader sees on screen: not styles, not the iframe's srcdoc (an attribute),
    not the print copy (hidden until printed)."""

    VOID = frozenset({"br", "img", "hr", "meta", "link", "input", "wbr", "col", "source"})

    def __init__(self, page: str) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self._skip = 0  # open elements whose text is not seen
        self.feed(page)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in self.VOID:
            return
        hidden = tag in ("style", "script", "title") or PRINT_CLASS in (
            dict(attrs).get("class") or ""
        )
        if self._skip or hidden:
            self._skip += 1

    def handle_endtag(self, tag: str) -> None:
        if self._skip and tag not in self.VOID:
            self._skip -= 1

    def handle_data(self, data: str) -> None:
        if not self._skip:
            self.parts.append(data)

    @property
    def text(self) -> str:
        return "\n".join(p.strip() for p in self.parts if p.strip())


def _section(text: str, start: str, end: str | None = None) -> str:
    after = text.split(start, 1)[1]
    return after.split(end, 1)[0] if end else after


# --- the sent report, from the ledger (bcartnb report ID) -------------------------------------


def test_a_sent_report_reads_as_received_with_the_shops_own_addresses_in_clear(
    shop: Path, smtp_server: Any
) -> None:
    server = smtp_server()
    settings = _settings(shop, server)
    summary = send(plan_campaign(_spec(shop), settings), progress=False)
    assert (summary.sent, summary.unsendable) == (2, 1)
    page = report.write_report(summary.campaign_id, settings, shop / "reports" / "sent.html")
    html = page.read_text(encoding="utf-8")
    text = _Text(html).text

    # the subject as member 3001 received it: merge fields filled, personal values masked
    head = _section(text, "メール配信レポート", "開始")
    assert "件名（会員ID 3001 宛）" in head
    assert "【見本商事】テスト商事 山*** 太*** 様 TEL 0*** のご案内" in head
    assert "{{" not in head and "山田" not in head and "03-1111-2222" not in head
    # the shop's own addresses as written: From, the admin copy, the signature's contact
    assert "見本商事オンラインショップ <shop@example.co.jp>" in head
    assert "admin@example.co.jp に送信済み" in text
    assert "お問い合わせ: info@shop.example.co.jp" in text  # the mail's text part
    # every member's address masked, wherever it appears (To, the body, the tables)
    for whole in ("taro@member.co.jp", "hanako@member.co.jp"):
        assert whole not in html
    assert "会員ID 3001 宛（t***@member.co.jp）" in text
    assert "ご登録のアドレス: t***@member.co.jp" in text
    # a sent report has no banner
    assert report.DRY_RUN_BANNER not in text and "確認のみ" not in head

    # `bcartnb report ID` writes the same page where the notebook writes its own: reports/
    env = {k: v for k, v in os.environ.items() if not k.startswith("BCARTNB_")}
    cli = bcartnb("report", summary.campaign_id, env={**env, **server.env()}, cwd=shop / "reports")
    target = shop / "reports" / f"campaign-{summary.campaign_id}.html"
    assert cli.returncode == 0 and str(target) in cli.stdout, cli.stderr
    assert _Text(target.read_text(encoding="utf-8")).text == text


def test_the_parameters_read_as_words(shop: Path, smtp_server: Any) -> None:
    server = smtp_server()
    settings = _settings(shop, server)
    summary = send(
        plan_campaign(_spec(shop, checked=[3001, 3002], opt_in_only=False), settings),
        progress=False,
    )
    page = report.write_report(summary.campaign_id, settings, shop / "p.html")
    params = _section(_Text(page.read_text(encoding="utf-8")).text, "\nパラメータ\n")
    assert "絞込オプション\n都道府県が 東京都 または 大阪府" in params
    assert "送信対象\nチェックした会員に送信（2 件: 会員ID 3001、3002）" in params
    assert "文字コード\nUTF-8" in params and "HTMLメールで送信\nはい" in params
    assert "テンプレート\n使わない（件名と本文を指定）" in params
    # no JSON, no Python list, no English key (the subject and body are the shop's own text)
    params = params.replace(SUBJECT, "").replace(BODY, "")
    for raw in ("{", "[", '"', "None", "True", "False", "filter", "checked", "encoding"):
        assert raw not in params, raw


# --- the dry run, written by the notebook's own call ----------------------------------------


def test_a_dry_run_report_says_so_first_and_is_written_to_the_shops_reports(
    shop: Path, smtp_server: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    server = smtp_server()
    settings = _settings(shop, server)
    plan = plan_campaign(_spec(shop), settings)
    summary = dry_run(plan)
    report.show_report(plan, summary, {"subject": SUBJECT}, ledger_usage={})
    written = shop / "reports" / f"campaign-{summary.campaign_id}.html"
    assert f"HTMLのレポートを書き出しました: {written}" in capsys.readouterr().out
    text = _Text(written.read_text(encoding="utf-8")).text
    assert text.index(report.DRY_RUN_BANNER) < text.index("メール配信レポート")
    assert "メールは1通も送信していません" in text and "確認のみ（未送信）" in text
    assert "【見本商事】テスト商事 山*** 太*** 様" in text
    assert server.received == []
    # "" writes nothing; a path writes there; outside a shop nothing by default
    assert report.report_target("", settings, summary.campaign_id) is None
    assert report.report_target(str(shop / "x.html"), settings, "id") == shop / "x.html"
    assert report.report_target(None, settings.replace(source=None), "id") is None


def test_a_folder_that_cannot_be_written_is_a_note_in_the_report_not_a_lost_run(
    shop: Path, smtp_server: Any
) -> None:
    server = smtp_server()
    plan = plan_campaign(_spec(shop), _settings(shop, server))
    summary = send(plan, progress=False)
    shown: list[Any] = []
    import IPython.display as ipd

    real = ipd.display
    ipd.display = lambda *objs, **kw: shown.extend(objs)  # type: ignore[assignment]
    try:
        report.show_report(plan, summary, {}, str(shop / "no" / "such" / "r.html"))
    finally:
        ipd.display = real  # type: ignore[assignment]
    plain = "".join(b.get("text/plain", "") for b in shown if isinstance(b, dict))
    assert "HTMLのレポートを書き出せませんでした" in plain
    assert summary.sent == 2  # the run stands
    # the subject as received is noted for later: with the member file gone, the ledger's
    # report still shows it (and no longer names a member it cannot make the mail for)
    (shop / "members.csv").unlink()
    later = report.from_ledger(summary.campaign_id, plan.settings)
    assert later.subject == "【見本商事】テスト商事 山*** 太*** 様 TEL 0*** のご案内"
    assert later.subject_member is None and later.sample is None


@pytest.mark.timeout(240)
def test_the_papermill_recipe_writes_the_html_report(shop: Path, smtp_server: Any) -> None:
    """The README's recipe, a dry run in a shop folder: the page lands in its reports/."""
    server = smtp_server()
    (shop / "templates" / "お知らせ.txt").write_text(
        f'+++\nsubject = "{SUBJECT}"\nhtml = true\n+++\n{BODY}\n', encoding="utf-8"
    )
    out = shop / "reports" / "campaign.ipynb"
    with pytest.MonkeyPatch.context() as mp:
        for key, value in server.env().items():
            mp.setenv(key, value)
        mp.delenv("BCARTNB_CONFIG", raising=False)
        papermill.execute_notebook(
            str(CAMPAIGN),
            str(out),
            parameters={"members": str(shop / "members.csv"), "template": "お知らせ"},
            kernel_name="python3",
            cwd=str(shop),
            progress_bar=False,
        )
    cid = report.read_summary(out)["campaign_id"]
    page = shop / "reports" / f"campaign-{cid}.html"
    text = _Text(page.read_text(encoding="utf-8")).text
    assert text.startswith(report.DRY_RUN_BANNER)
    assert "見本商事オンラインショップ <shop@example.co.jp>" in text
    assert "taro@member.co.jp" not in page.read_text(encoding="utf-8")


# --- the print copy of the HTML mail --------------------------------------------------------

_PRINT_TAGS = set(
    [
        "a",
        "abbr",
        "b",
        "big",
        "blockquote",
        "br",
        "caption",
        "center",
        "code",
        "dd",
        "div",
        "dl",
        "dt",
        "em",
        "font",
        "h1",
        "h2",
        "h3",
        "h4",
        "h5",
        "h6",
        "hr",
        "i",
        "img",
        "li",
        "ol",
        "p",
        "pre",
        "s",
        "small",
        "span",
        "strike",
        "strong",
        "sub",
        "sup",
        "table",
        "tbody",
        "td",
        "tfoot",
        "th",
        "thead",
        "tr",
        "tt",
        "u",
        "ul",
    ]
)


class _Elements(HTMLParser):
    def __init__(self, page: str) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.text: list[str] = []
        self.feed(page)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))

    def handle_data(self, data: str) -> None:
        self.text.append(data)


HOSTILE_MAIL = (
    "<html><head><style>body{display:none}</style><script>alert(1)</script></head><body>"
    '<p onclick="alert(2)" style="color:red">本文 <b>太字</b></p>'
    '<img src="http://127.0.0.1:9/pixel.png" alt="ロゴ"><img src="data:image/png;base64,AAAA">'
    '<a href="javascript:alert(3)">悪いリンク</a><a href="https://shop.example.co.jp/">店</a>'
    '<div style="background:url(http://127.0.0.1:9/bg.png)">背景</div>'
    "<svg><script>alert(4)</script></svg><noscript><p>隠れ</p></noscript>"
    '<p style="position:fixed;top:0">上に重なる</p><iframe src="https://x.jp/"></iframe>'
    "<!-- 注釈 --><table><tr><td colspan=2>表</td></tr></table></body></html>"
)


def test_the_print_copy_keeps_the_mail_static_and_leaves_out_what_reaches_out() -> None:
    copy = print_copy(HOSTILE_MAIL)
    parsed = _Elements(copy)
    tags = [t for t, _ in parsed.tags]
    assert tags[0] == "div" and parsed.tags[0][1] == {"class": PRINT_CLASS, "style": "display:none"}
    assert set(tags) <= _PRINT_TAGS
    attrs = [(t, k, v or "") for t, a in parsed.tags[1:] for k, v in a.items()]
    assert not [k for _, k, _ in attrs if k.startswith("on")]
    assert [v for t, k, v in attrs if k == "src"] == ["data:image/png;base64,AAAA"]
    assert [v for t, k, v in attrs if k == "href"] == ["https://shop.example.co.jp/"]
    assert not [v for _, k, v in attrs if k == "style" and ("url(" in v or "position" in v)]
    text = "".join(parsed.text)
    for kept in ("本文", "太字", "悪いリンク", "［画像: ロゴ］", "背景", "上に重なる", "表"):
        assert kept in text, kept
    for dropped in ("alert", "隠れ", "注釈", "display:none}"):
        assert dropped not in text, dropped


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.text(alphabet=st.sampled_from(list("<>/=\"' abcdiv&;:#()-!svgscriptonload\n")), max_size=200)
)
def test_whatever_the_mail_holds_the_print_copy_is_only_allowed_tags(mail: str) -> None:
    parsed = _Elements(print_copy(mail))
    assert {t for t, _ in parsed.tags} <= _PRINT_TAGS
    for _, attrs in parsed.tags:
        assert not [k for k in attrs if k.startswith("on")]
        assert "javascript" not in (attrs.get("href") or "").lower()


# --- privacy: the rules the report leans on ------------------------------------------------


def test_mask_text_keeps_the_shops_own_addresses_and_masks_the_rest() -> None:
    text = "From Shop@Example.co.jp to taro@member.co.jp, cc shop@example.co.jp.evil.jp"
    assert mask_text(text, keep={"shop@example.co.jp"}) == (
        "From Shop@Example.co.jp to t***@member.co.jp, cc s***@example.co.jp.evil.jp"
    )
    assert mask_text(text) == (
        "From S***@Example.co.jp to t***@member.co.jp, cc s***@example.co.jp.evil.jp"
    )


def test_mask_values_masks_each_value_once_longest_first() -> None:
    assert mask_values("山田 山 太郎 様", ["山", "山田", "", None, 3]) == "山*** *** 太郎 様"
    assert mask_values("件名", []) == "件名"


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=40), st.lists(st.text(min_size=2, max_size=6), max_size=4))
def test_no_masked_value_survives_whatever_the_text(text: str, values: list[str]) -> None:
    values = [v for v in values if "*" not in v and v.strip() == v]
    masked = mask_values(text, values)
    for value in values:
        assert value not in masked or any(value in o and o != value for o in values)


def test_own_addresses_come_from_the_settings_only() -> None:
    s = Settings(
        from_addr="shop@example.co.jp",
        admin="Admin@Example.co.jp",
        signature="TEL 03 / info@shop.example.co.jp",
        unsubscribe_mailto="mailto:stop@shop.example.co.jp",
    )
    assert s.own_addresses == {
        "shop@example.co.jp",
        "admin@example.co.jp",
        "info@shop.example.co.jp",
        "stop@shop.example.co.jp",
    }


@pytest.mark.parametrize(
    ("table_text", "said"),
    [
        ('[shop]\nurl = "javascript:alert(1)"\n', "[shop] url"),
        ('[shop]\ncontact = "一行目\\n二行目"\n', "[shop] contact"),
        ('[shop]\nnme = "見本"\n', "nme"),
    ],
)
def test_bad_shop_settings_are_refused_naming_the_key(
    tmp_path: Path, table_text: str, said: str
) -> None:
    path = tmp_path / "bcartnb.toml"
    path.write_text('plan = "プラン10"\n' + table_text, encoding="utf-8")
    with pytest.raises(SettingsError) as info:
        load_settings(path, env={})
    assert said in str(info.value) and info.value.ja


# --- the list-hygiene report's header -------------------------------------------------------


def test_the_hygiene_report_has_a_header_and_no_row_numbers() -> None:
    from datetime import datetime

    from bcartnb.quota import TOKYO

    s = Settings(from_addr="shop@example.co.jp", from_name="見本商事 <&>")
    block = header("2026-02", s, datetime(2026, 3, 1, 9, 5, tzinfo=TOKYO))
    assert block["text/plain"].startswith(HYGIENE_TITLE)
    for words in ("見本商事 <&>", "2026-03-01 09:05（日本時間）", "2026-02-01 〜 2026-02-28"):
        assert words in block["text/plain"]
    assert "見本商事 &lt;&amp;&gt;" in block["text/html"]
    no_shop = header("2026-11", Settings(from_addr="shop@example.co.jp"))["text/plain"]
    assert "shop@example.co.jp" in no_shop and "2026-11-30" in no_shop
    import pandas as pd

    rows = table(pd.DataFrame({"件名": ["a", "b"]}), index=False)
    assert "<th" not in rows["text/html"].split("</thead>")[1]  # no 0, 1 row labels
    assert re.search(r"<td[^>]*>a</td>", rows["text/html"])
