"""送信前の確認 (bcartnb.mailcheck): each check fires on a crafted mail and is quiet on a clean
one; hostile HTML never breaks it; the plan, the dry run and a real send carry the findings."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from bounded import finishes
from hypothesis import example, given, settings
from hypothesis import strategies as st
from smtp_servers import TestServer

from bcartnb.campaign import CampaignSpec, plan_campaign, run
from bcartnb.compose import Composer, Draft, preview
from bcartnb.mailcheck import (
    CODES,
    GMAIL_CLIP_BYTES,
    Finding,
    check_parts,
    format_findings,
    html_size,
)
from bcartnb.members import read_members
from bcartnb.settings import Settings, load_settings
from bcartnb.templates import TemplateStore

REPO = Path(__file__).resolve().parent.parent
SENDER = "見本商事オンラインショップ"
CLEAN_TEXT = f"""株式会社テスト商事
山田 太郎 様

新商品のご案内です。
https://shop.example.co.jp/new/

{SENDER}
〒100-0005 東京都千代田区丸の内1-1-1
TEL 03-0000-0000 / shop@example.co.jp
配信停止をご希望の方は https://shop.example.co.jp/mail/stop からお手続きください。
"""
CLEAN_HTML = f"""<!DOCTYPE html><html><head><title>配信停止</title>
<style>p {{ color: #333; }}</style></head><body>
<p>株式会社テスト商事<br>山田 太郎 様</p>
<p>新商品は<a href="https://shop.example.co.jp/new/">こちら</a>。
<a href="https://shop.example.co.jp/">https://shop.example.co.jp</a></p>
<p><img src="https://shop.example.co.jp/a.png" alt="新商品の写真">
<img src="https://shop.example.co.jp/open.gif" width="1" height="1" alt=""></p>
<p>{SENDER}<br>〒100-0005 東京都千代田区丸の内1-1-1<br>
お問い合わせ: <a href="mailto:shop@example.co.jp">shop@example.co.jp</a></p>
<p>配信停止をご希望の方は<a href="https://shop.example.co.jp/mail/stop">こちら</a>から。</p>
</body></html>
"""


def check(
    subject: str = "ご案内",
    text: str = CLEAN_TEXT,
    html: str | None = CLEAN_HTML,
    **kw: Any,
) -> list[Finding]:
    kw.setdefault("sender_name", SENDER)
    return check_parts(subject, text, html, **kw)


def codes(found: list[Finding]) -> list[str]:
    return [f.code for f in found]


def test_a_clean_mail_has_no_finding() -> None:
    assert check() == []
    assert check(html=None) == []


# Each case: what to change in the clean mail, the code that must fire, and a piece of the
# detail that says exactly where.
CASES: list[tuple[str, dict[str, Any], str, str]] = [
    ("empty subject", {"subject": " "}, "subject_empty", "件名"),
    ("leftover {{", {"text": CLEAN_TEXT + "{{ 名前 }}\n"}, "leftover_markup", "「{{」"),
    (
        "sender missing",
        {"text": CLEAN_TEXT.replace(SENDER, "弊社"), "html": None},
        "sender_name",
        f"テキストパート: 「{SENDER}」",
    ),
    ("no sender name set", {"sender_name": "  "}, "sender_name", "from"),
    (
        "no address",
        {"text": CLEAN_TEXT.replace("〒100-0005 東京都千代田区丸の内1-1-1", "本社"), "html": None},
        "sender_address",
        "テキストパート",
    ),
    (
        "no contact",
        {
            "text": CLEAN_TEXT.replace("TEL 03-0000-0000 / shop@example.co.jp", ""),
            "html": None,
        },
        "contact",
        "テキストパート",
    ),
    (
        "no opt-out",
        {"text": CLEAN_TEXT.rsplit("配信停止", 1)[0], "html": None},
        "opt_out",
        "受信拒否（配信停止）ができる旨の記載がありません",
    ),
    (
        "opt-out without a route",
        {
            "text": "配信停止も承ります。\nいつも\nありがとう\nございます。\n"
            + CLEAN_TEXT.rsplit("配信停止", 1)[0],
            "html": None,
        },
        "opt_out",
        "通知先",
    ),
    (
        "image without alt",
        {"html": CLEAN_HTML.replace('alt="新商品の写真"', "")},
        "img_alt",
        "https://shop.example.co.jp/a.png: alt がありません",
    ),
    (
        "image with a blank alt",
        {"html": CLEAN_HTML.replace('alt="新商品の写真"', 'alt=" "')},
        "img_alt",
        "alt が空です",
    ),
    (
        "link text names another URL",
        {"html": CLEAN_HTML.replace('"https://shop.example.co.jp/">', '"https://evil.example/">')},
        "link_text_mismatch",
        "https://shop.example.co.jp → リンク先 https://evil.example/",
    ),
    (
        "link text names another address",
        {"html": CLEAN_HTML.replace("mailto:shop@example.co.jp", "mailto:phish@evil.example")},
        "link_text_mismatch",
        "mailto:phish@evil.example",
    ),
    (
        "javascript link",
        {"html": CLEAN_HTML.replace("https://shop.example.co.jp/new/", "javascript:alert(1)")},
        "link_scheme",
        "javascript:alert(1)",
    ),
]


@pytest.mark.parametrize(
    ("change", "code", "detail"), [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_each_check_fires_on_a_crafted_mail(change: dict[str, Any], code: str, detail: str) -> None:
    found = check(**change)
    assert codes(found) == [code], found
    assert detail in found[0].detail
    assert found[0].message and found[0].as_dict() == {
        "code": code,
        "message": found[0].message,
        "detail": found[0].detail,
    }


def test_the_law_items_are_checked_in_each_part() -> None:
    """The HTML part hides its opt-out (display:none); the text part, derived from it, may not."""
    hidden = CLEAN_HTML.replace(
        "<p>配信停止をご希望の方は", '<p style="DISPLAY: none">配信停止をご希望の方は'
    )
    found = check(html=hidden)
    assert codes(found) == ["opt_out"]
    assert found[0].detail.startswith("HTMLパート:") and "テキストパート" not in found[0].detail
    no_name_anywhere = check(
        text=CLEAN_TEXT.replace(SENDER, "弊社"), html=CLEAN_HTML.replace(SENDER, "弊社")
    )
    assert codes(no_name_anywhere) == ["sender_name"]
    assert no_name_anywhere[0].detail.startswith("テキストパート、HTMLパート:")


def test_text_in_script_style_head_or_hidden_is_not_shown_text() -> None:
    body = (
        "<html><head><title>{0}</title></head><body><script>{0}</script>"
        "<style>/* {0} */</style><div hidden>{0}</div><span style='visibility:hidden'>{0}</span>"
        "<p>本文</p></body></html>"
    ).format(f"{SENDER} 〒100-0005 TEL 03-0000-0000 配信停止 https://x.example/")
    found = check(html=body)
    assert codes(found) == ["sender_name", "opt_out", "sender_address", "contact", "script"]
    assert all(f.detail.startswith("HTMLパート") for f in found)


def test_addresses_and_phones_are_told_from_lookalikes() -> None:
    def address_found(line: str) -> bool:
        text = CLEAN_TEXT.replace("〒100-0005 東京都千代田区丸の内1-1-1", line)
        return "sender_address" not in codes(check(text=text, html=None))

    assert address_found("〒１００－０００５（全角）")  # NFKC: full-width digits and hyphen
    assert address_found("大阪府大阪市北区梅田1-1")
    assert address_found("横浜市西区みなとみらい2-2")
    assert not address_found("東京都への配送も最短翌日です")
    assert not address_found("お電話 0120-000-0000")  # a phone number is no postal code

    def contact_found(line: str) -> bool:
        text = CLEAN_TEXT.replace("TEL 03-0000-0000 / shop@example.co.jp", line)
        return "contact" not in codes(check(text=text, html=None))

    assert contact_found("TEL 0312345678")
    assert contact_found("電話: 06(1234)5678")
    assert contact_found("お問い合わせはこちら\nhttps://shop.example.co.jp/contact")
    assert not contact_found("注文番号 2026-1127-0001")


def test_gmail_clip_boundary_is_exact() -> None:
    """102 KB = 104,448 bytes of the HTML part as carried: one byte more is a finding."""
    base = CLEAN_HTML.replace("</body>", "<!--PAD--></body>")
    pad = GMAIL_CLIP_BYTES - html_size(base.replace("PAD", ""))
    at_limit = base.replace("PAD", "x" * pad)
    assert html_size(at_limit) == GMAIL_CLIP_BYTES
    assert check(html=at_limit) == []
    over = base.replace("PAD", "x" * (pad + 1))
    found = check(html=over)
    assert codes(found) == ["html_size"]
    assert found[0].detail == "HTMLパート 104,449 バイト（上限 104,448 バイト = 102KB）"


def test_html_size_counts_crlf_and_the_mails_charset() -> None:
    assert html_size("a\nb") == html_size("a\r\nb") == html_size("a\rb") == 4
    assert html_size("あ") == 3
    assert html_size("あ", "iso-2022-jp") == len("あ".encode("iso-2022-jp")) == 8
    assert html_size("①", "iso-2022-jp") == len(b"?")  # never raises
    assert html_size("a", "no-such-charset") == 1


HOSTILE = {
    "unclosed tags": "<p><b><a href='https://x.example/'>https://y.example/<img src=a",
    "script": "<script>document.write('<a href=javascript:x>')</script><p>配信停止",
    "NUL": "<p>a\x00b<a href='https://x.example/\x00'>https://x.example/\x00</a><img\x00src=x>",
    "nested links": "<a href='https://a.example/'>x<a href='https://b.example/'>https://c.example/</a></a>",
    "entities in href": "<a href='&#x68;ttp://evil.example/'>https://shop.example.co.jp/</a>",
    "javascript with tab": "<a href=' java\tscript:alert(1)'>クリック</a>",
    "mixed case": "<IMG SRC='https://x.example/a.png'><A HREF='VBScript:x'>x</A>",
    "bad URLs": "<a href='http://[::1'>http://[::1/</a><a href='http://x:99999/'>x.example:99999</a>",
    "huge": "<a " * 100_000 + "<" * 100_000 + "<div>" * 3_000,
    "CR LF in attributes": "<img src='a\r\nb' alt='\r\n'><a href='\r\nhttps://a.example/'>b.example</a>",
    "empty": "",
}


@pytest.mark.parametrize("html", HOSTILE.values(), ids=HOSTILE.keys())
def test_hostile_html_never_breaks_the_checks(html: str) -> None:
    found = finishes(lambda: check(text="x", html=html))
    assert set(codes(found)) <= set(CODES)
    for f in found:
        assert "\n" not in f.detail and "\r" not in f.detail and "\x00" not in f.detail
        assert len(f.detail) < 1000


LONG_LINES = {
    "letters": "a" * 200_000,
    "dots": "a." * 100_000,
    "at and dots": "a@" + "b." * 100_000 + "@",
    "ats": "a@" * 100_000,
    "digits and hyphens": "0-" * 100_000,
    "a URL": "https://" + "a" * 200_000,
}


@pytest.mark.parametrize("line", LONG_LINES.values(), ids=LONG_LINES.keys())
def test_a_long_line_is_checked(line: str) -> None:
    """A quadratic pattern took a minute on 100,000 letters; bench/bench_mailcheck.py measures
    that the time grows linearly with the line."""
    html = f"<p>{line}</p><a href='mailto:{line}'>{line}</a><a href='http://x.example/'>{line}</a>"
    assert set(codes(finishes(lambda: check(text=line, html=html)))) <= set(CODES)


def test_hostile_html_is_read_as_a_mail_client_reads_it() -> None:
    assert codes(check(html=CLEAN_HTML + HOSTILE["entities in href"])) == ["link_text_mismatch"]
    assert "http://evil.example/" in check(html=CLEAN_HTML + HOSTILE["entities in href"])[0].detail
    assert codes(check(html=CLEAN_HTML + HOSTILE["javascript with tab"])) == ["link_scheme"]
    assert codes(check(html=CLEAN_HTML + HOSTILE["mixed case"])) == ["img_alt", "link_scheme"]
    # the inner link closes the outer one, as browsers do: its text is checked against its own
    nested = check(html=CLEAN_HTML + HOSTILE["nested links"])
    assert [f.detail for f in nested] == [
        "リンクの文字 https://c.example/ → リンク先 https://b.example/"
    ]
    # a control character in a detail is shown escaped, on one line (NUL is U+FFFD in HTML5)
    assert "a\\x01b" in check(html=CLEAN_HTML + "<img src='a\x01b'>")[0].detail


ANY_TEXT = st.text(st.characters(exclude_categories=()))  # lone surrogates included
HTMLISH = st.text("<>/=\"' &#;:ahimgrefsclt\x00")


@settings(max_examples=300, deadline=None)
@given(ANY_TEXT, ANY_TEXT, st.one_of(ANY_TEXT, HTMLISH), ANY_TEXT)
@example("", "\ud800", "<img src='\udfff'><a href='\ud800'>a\ud800.example</a>", "名\udc00")
def test_checks_never_raise_on_arbitrary_text(
    subject: str, text: str, html: str, name: str
) -> None:
    for found in (
        check_parts(subject, text, html, sender_name=name),
        check_parts(subject, text, None, sender_name=name, charset="iso-2022-jp"),
    ):
        assert [f.code for f in found] == sorted(codes(found), key=CODES.index)
        for f in found:
            assert "\n" not in f.detail and "\r" not in f.detail
            str(f).encode("utf-8")  # printable and JSON-able, whatever came in


def test_the_active_content_module_exports_what_it_says() -> None:
    import bcartnb.active_content as active

    kind = {n: 0 if n.isupper() else 1 if n[0].isupper() else 2 for n in active.__all__}
    assert active.__all__ == sorted(active.__all__, key=lambda n: (kind[n], n))
    assert all(hasattr(active, name) for name in active.__all__)
    assert set(active.ACTIVE_MESSAGES) == set(CODES[CODES.index("link_scheme") :])


def test_format_findings_for_the_command_line() -> None:
    assert format_findings([]) == []
    found = check(subject="")
    assert format_findings(found) == ["送信前の確認:", f"  ・{found[0].message} — 件名"]


# --- on real composed mails ---------------------------------------------------------------


@pytest.fixture
def demo_settings() -> Settings:
    return load_settings(REPO / "data" / "demo.toml", env={})


@pytest.mark.parametrize("name", TemplateStore(REPO / "data" / "templates").list())
@pytest.mark.parametrize("encoding", ["utf-8", "iso-2022-jp"])
def test_the_demo_templates_pass_every_check(
    demo_settings: Settings, name: str, encoding: str
) -> None:
    """On the final mail, the demo signature included, for every demo member it mails."""
    template = TemplateStore(demo_settings.templates).get(name)
    draft = Draft.from_template(template, encoding=encoding)
    composer = Composer(draft, demo_settings, "c-demo")
    members = read_members(REPO / "data" / "demo_members.csv")
    sendable = members[members["email"].notna()].head(40)
    shown = [p for p in preview(composer, sendable, n=40) if p.error is None]
    assert len(shown) >= 15  # ISO-2022-JP cannot carry some demo names (①, ㈱): those error
    assert [(p.member_id, p.checks) for p in shown if p.checks] == []


def test_the_signature_is_what_satisfies_the_law(demo_settings: Settings) -> None:
    """The check runs on the mail as sent: without the signature the demo text lacks it."""
    template = TemplateStore(demo_settings.templates).get("テキストニュースレター")
    members = read_members(REPO / "data" / "demo_members.csv").head(1)
    with_sig = Composer(Draft.from_template(template), demo_settings, "c1")
    without = Composer(Draft.from_template(template, insert_signature=False), demo_settings, "c2")
    assert preview(with_sig, members)[0].checks == ()
    assert codes(list(preview(without, members)[0].checks)) == [
        "sender_name",
        "sender_address",
        "contact",
    ]


def write_campaign(tmp_path: Path) -> Path:
    (tmp_path / "members.csv").write_text(
        "会員ID,会社名,担当者(姓),担当者(名),メールアドレス,メール案内\n"
        "7,<script>商事,山田,太郎,a@example.co.jp,受け取る\n"
        "8,テスト商事,田中,一,b@example.co.jp,受け取る\n",
        encoding="utf-8",
    )
    return tmp_path / "members.csv"


def test_the_plan_and_a_real_send_carry_the_findings_but_never_refuse(
    tmp_path: Path, smtp_server: Callable[..., TestServer]
) -> None:
    server = smtp_server()
    settings_ = Settings(
        plan="プラン10",
        from_addr="shop@example.co.jp",
        from_name="見本商事",
        admin="admin@example.co.jp",
        signature="見本商事株式会社\n〒100-0001 東京都千代田区千代田1-1\nTEL 03-0000-0000",
        db=tmp_path / "ledger.sqlite3",
        smtp=server.settings(),
    )
    spec = CampaignSpec.from_mapping(
        {
            "members": str(write_campaign(tmp_path)),
            "subject": "{{ 会社名 }} 様",
            "body": "<p>{{ 会社名 }} 様</p><p><img src='https://x.example/a.png'></p>",
            "html": True,
        }
    )
    plan = plan_campaign(spec, settings_)
    assert plan.checks_member == 7
    assert codes(list(plan.checks)) == ["opt_out", "img_alt"]
    dry = run(spec, settings_, send=False).summary
    assert [c["code"] for c in dry.as_dict()["checks"]] == ["opt_out", "img_alt"]
    assert dry.as_dict()["checks_member"] == 7
    sent = run(spec, settings_, send=True, progress=False).summary
    assert sent.exit_code == 0 and sent.sent == 2
    assert [c["code"] for c in sent.as_dict()["checks"]] == ["opt_out", "img_alt"]
    assert len([r for r in server.received if r.recipients[0] != "admin@example.co.jp"]) == 2


def test_a_plan_with_nobody_to_mail_has_no_checks(tmp_path: Path) -> None:
    (tmp_path / "members.csv").write_text(
        "会員ID,会社名,メールアドレス\n1,テスト商事,\n", encoding="utf-8"
    )
    spec = CampaignSpec.from_mapping(
        {"members": str(tmp_path / "members.csv"), "subject": "s", "body": "b"}
    )
    settings_ = Settings(plan="プラン10", from_addr="s@example.co.jp", db=tmp_path / "l.db")
    plan = plan_campaign(spec, settings_)
    assert plan.audience.sendable.empty
    assert plan.checks == () and plan.checks_member is None


def test_the_confirmation_step_shows_the_previewed_mails_checks() -> None:
    """Escaped, deduplicated (here, not in test_widgets.py, which another branch rewrites)."""
    from bcartnb.compose import Preview
    from bcartnb.widgets.confirm_step import ConfirmStep

    found = check(
        html=CLEAN_HTML.replace('alt="新商品の写真"', "").replace("a.png", "<script>.png")
    )
    step = ConfirmStep()
    step.show_previews(
        [Preview(member_id=1, checks=tuple(found)), Preview(2, checks=tuple(found))], ["注意です"]
    )
    shown = step.warnings.value
    assert "注意です" in shown and "<b>送信前の確認</b>" in shown
    assert shown.count('data-code="img_alt"') == 1
    assert "&lt;script&gt;.png" in shown and "<script>" not in shown
    step.show_previews([Preview(member_id=1)], [])
    assert step.warnings.value == ""


# --- active content: what mail clients strip and filters punish -------------------------

# (what is added to the clean mail, the code it must add, a piece of the detail)
ACTIVE: list[tuple[str, str, str, str]] = [
    ("script", "<script>alert(1)</script>", "script", "<script>"),
    ("script in SVG", "<svg><script>alert(1)</script></svg>", "script", "<script>"),
    ("remote script", '<script src="https://x.example/a.js"></script>', "script", "a.js"),
    ("onclick", '<div onclick="alert(1)">x</div>', "event_handler", 'onclick="alert(1)"'),
    ("onload on body", "<body onload=alert(1)>", "event_handler", "<body onload"),
    (
        "onerror on an image",
        '<img src=x alt="写真" OnError="alert(1)">',
        "event_handler",
        "onerror",
    ),
    ("SVG onload", "<svg onload=alert(1)></svg>", "event_handler", "<svg onload"),
    ("SVG animation event", '<svg><set onbegin="alert(1)"/></svg>', "event_handler", "onbegin"),
    (
        "meta refresh",
        '<meta http-equiv=" Refresh " content="0;url=https://evil.example/">',
        "meta_refresh",
        "evil.example",
    ),
    ("base", '<base href="https://evil.example/">', "base", "<base href"),
    ("form", '<form action="https://evil.example/"><input></form>', "form", "<form action"),
    ("iframe", '<iframe src="https://evil.example/"></iframe>', "embed", "<iframe"),
    ("object", '<object data="https://evil.example/x.swf"></object>', "embed", "<object"),
    ("embed", '<embed src="https://evil.example/x.swf">', "embed", "<embed"),
    (
        "SVG link",
        '<svg><a xlink:href="javascript:alert(1)"><text>x</text></a></svg>',
        "link_scheme",
        "xlink:href",
    ),
    (
        "SVG href",
        '<svg><a href="javascript:alert(1)"><text>x</text></a></svg>',
        "link_scheme",
        "<a href",
    ),
    (
        "MathML href",
        '<math href="javascript:alert(1)"><mi>x</mi></math>',
        "link_scheme",
        "<math href",
    ),
    (
        "SVG animate writes a link",
        '<svg><a><animate attributeName="href" to="javascript:alert(1)"/></a></svg>',
        "link_scheme",
        "<animate",
    ),
    ("area", '<map><area href="vbscript:msgbox(1)"></map>', "link_scheme", "vbscript"),
    ("data: link", '<a href="data:text/html,<script>x</script>">見る</a>', "link_scheme", "data:"),
    (
        "remote CSS in <style>",
        "<style>.hero { background: url(https://track.example/o.gif) }</style>",
        "css_remote",
        "https://track.example/o.gif",
    ),
    ("@import", '<style>@import "https://x.example/a.css";</style>', "css_remote", "a.css"),
    (
        "@import url()",
        "<style>@import url( 'https://x.example/b.css' );</style>",
        "css_remote",
        "b.css",
    ),
    (
        "remote CSS in style=",
        "<p style=\"background-image: URL('https://x.example/bg.png')\">x</p>",
        "css_remote",
        "<p style> の https://x.example/bg.png",
    ),
    (
        "CSS escapes",
        r"<style>p { background: u\72l(ht\74ps://x.example/e.png) }</style>",
        "css_remote",
        "https://x.example/e.png",
    ),
    (
        "protocol-relative",
        "<p style='background:url(//x.example/p.png)'>x</p>",
        "css_remote",
        "//x.example",
    ),
    (
        "<link> stylesheet",
        '<link rel="Stylesheet" href="https://x.example/s.css">',
        "css_remote",
        "s.css",
    ),
]


@pytest.mark.parametrize(
    ("added", "code", "detail"), [c[1:] for c in ACTIVE], ids=[c[0] for c in ACTIVE]
)
def test_each_active_construct_adds_its_finding(added: str, code: str, detail: str) -> None:
    html = CLEAN_HTML.replace("</body>", added + "\n</body>")
    found = check(html=html)
    assert codes(found) == [code], found
    line = html[: html.index(added)].count("\n") + 1
    # a second <body> adds its attributes to the first: two tags, one element, no line
    where = "HTMLパート: " if added.startswith("<body") else f"HTMLパート {line}行目: "
    assert found[0].detail.startswith(where), found[0].detail
    assert detail in found[0].detail
    assert "\n" not in found[0].detail and found[0].message


# Every way a mail client may read "javascript:" (or vbscript:) in a link's target.
SCHEMES = {
    "mixed case": "JaVaScRiPt:alert(1)",
    "decimal entity": "&#106;avascript:alert(1)",
    "hex entity": "&#x6A;avascript:alert(1)",
    "entity without semicolon": "&#106avascript:alert(1)",
    "zero-padded entity": "&#0000106;avascript:alert(1)",
    "named colon": "javascript&colon;alert(1)",
    "tab entity inside": "java&Tab;script:alert(1)",
    "newline entity in front": "&NewLine;javascript:alert(1)",
    "tab inside": "java\tscript:alert(1)",
    "leading spaces and newlines": " \n\t javascript:alert(1)",
    "leading control": "\x01\x02javascript:alert(1)",
    "NUL inside": "java\x00script:alert(1)",
    "zero-width space": "java\u200bscript:alert(1)",
    "BOM in front": "\ufeffjavascript:alert(1)",
    "full-width": "ｊａｖａｓｃｒｉｐｔ：alert(1)",
    "vbscript": "VBScript:msgbox(1)",
    "data": " DATA:text/html;base64,PHNjcmlwdD4=",
    "file": "file:///etc/passwd",
}


@pytest.mark.parametrize("href", SCHEMES.values(), ids=SCHEMES.keys())
def test_an_unsafe_scheme_is_read_through_any_encoding(href: str) -> None:
    for link in (
        f'<a href="{href}">クリック</a>',
        f'<svg><a xlink:href="{href}"><text>x</text></a></svg>',
    ):
        found = check(html=CLEAN_HTML.replace("</body>", link + "</body>"))
        assert codes(found) == ["link_scheme"], (link, found)


def test_a_url_shown_over_a_javascript_target_is_also_a_mismatch() -> None:
    for href in ("javascript:alert(1)", "&#x6A;avascript:alert(1)", " JAVASCRIPT:x"):
        link = f'<a href="{href}">https://shop.example.co.jp/sale/</a>'
        found = check(html=CLEAN_HTML.replace("</body>", link + "</body>"))
        assert codes(found) == ["link_text_mismatch", "link_scheme"], found
        assert found[0].detail.startswith("リンクの文字 https://shop.example.co.jp/sale/ → ")


def test_the_line_is_left_out_when_the_source_does_not_show_it() -> None:
    """A link left open across a paragraph is reopened by the parser: two <a> elements from
    one tag, so no line can be named for either, rather than a wrong one."""
    html = CLEAN_HTML.replace("</body>", '<p><a href="javascript:x">a</p>b</body>')
    found = check(html=html)
    assert codes(found) == ["link_scheme", "link_scheme"]
    assert all(f.detail.startswith("HTMLパート: <a href=") for f in found)


def test_findings_of_one_kind_are_capped_with_the_rest_counted() -> None:
    html = CLEAN_HTML.replace("</body>", "<div onclick=x>a</div>\n" * 25 + "</body>")
    found = check(html=html)
    assert codes(found) == ["event_handler"] * 10
    assert found[-1].detail.endswith("（ほかに 15 件）")
    assert "ほかに" not in found[0].detail


def test_one_finding_a_remote_css_url_however_many_elements_use_it() -> None:
    """css-inline copies a <style> rule into every element it matches."""
    style = "style='background:url(https://x.example/bg.png)'"
    html = CLEAN_HTML.replace("<p>", f"<p {style}>")
    assert [f.detail.rsplit(" の ", 1)[-1] for f in check(html=html)] == [
        "https://x.example/bg.png"
    ]


NEWSLETTER = f"""<!DOCTYPE html><html lang="ja"><head>
<meta charset="utf-8"><meta http-equiv="Content-Type" content="text/html; charset=utf-8">
<meta name="viewport" content="width=device-width"><title>冬のご案内</title>
<link rel="icon" href="https://shop.example.co.jp/favicon.ico">
<style>
  .hero {{ background: #1a4d8f url(cid:hero.png) no-repeat; }}
  .logo {{ background-image: url("data:image/png;base64,iVBORw0KGgo="); }}
  .grad {{ fill: url(#grad1); }} /* see https://shop.example.co.jp/guide */
  @media (max-width: 480px) {{ .col {{ display: block !important; }} }}
</style></head>
<body style="margin:0"><center><table role="presentation" width="100%"><tr><td>
<!--[if mso]><table width="600"><tr><td><![endif]-->
<div class="hero" style="font-family: 'Hiragino Sans', Meiryo; color: #333">
<p>{SENDER}<br>株式会社テスト商事 山田 太郎 様</p>
<p>新商品は<a href="https://shop.example.co.jp/new/?utm_source=mail">こちら</a>、
<a href="#details">詳しく</a>、<a href="tel:0300000000">お電話</a>、
<a href="/relative/path">相対リンク</a>。</p>
<p><a href="https://shop.example.co.jp/"><img src="https://shop.example.co.jp/a.png"
 alt="新商品の写真" width="280" border="0" style="display:block"></a>
<img src="data:image/gif;base64,R0lGODlhAQABAAAAACw=" width="1" height="1" alt=""></p>
<svg width="10" height="10"><defs><linearGradient id="grad1"></linearGradient></defs>
<use href="#icon"/><image href="data:image/png;base64,iVBORw0KGgo=" width="1"/></svg>
<p>{SENDER}<br>〒100-0005 東京都千代田区丸の内1-1-1<br>
お問い合わせ: <a href="mailto:shop@example.co.jp?subject=お問い合わせ">shop@example.co.jp</a>
（平日 <span style="font-weight:bold">10:00-17:00</span>）</p>
<p class="note">配信停止をご希望の方は<a href="https://shop.example.co.jp/mail/stop">こちら</a>から。</p>
<p>Online shop: <a href="https://shop.example.co.jp">shop.example.co.jp</a></p>
</div>
<!--[if mso]></td></tr></table><![endif]-->
</td></tr></table></center></body></html>
"""


def test_a_normal_newsletter_has_no_finding() -> None:
    """cid: and data: in CSS, a fragment in url(), a commented URL, relative, tel:, #, mailto
    with a query, an SVG data: picture, meta Content-Type, a favicon link: none is active."""
    assert check(html=NEWSLETTER) == []


def test_the_html_is_parsed_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """One Lexbor tree a mail, however many checks read it."""
    import bcartnb.mailcheck as mailcheck

    built: list[str] = []
    real = mailcheck.LexborHTMLParser

    def counting(html: str) -> Any:
        built.append(html)
        return real(html)

    monkeypatch.setattr(mailcheck, "LexborHTMLParser", counting)
    html = CLEAN_HTML.replace("</body>", "".join(c[1] for c in ACTIVE) + "</body>")
    assert set(codes(check(html=html))) == {c[2] for c in ACTIVE}
    assert built == [html]


DANGEROUS = {name: (added, code) for name, added, code, _ in ACTIVE} | {
    f"href {name}": (f'<a href="{href}">x</a>', "link_scheme") for name, href in SCHEMES.items()
}
SPOTS = {
    "after <body>": "<body>\n",
    "inside a paragraph": "<p>株式会社テスト商事<br>",
    "before </body>": "\n</body>",
    "inside a link": ">こちら",
}


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(sorted(DANGEROUS)), st.sampled_from(sorted(SPOTS)), st.booleans())
def test_adding_any_dangerous_construct_to_a_clean_mail_adds_its_finding(
    name: str, spot: str, hidden: bool
) -> None:
    """Wherever it goes, and hidden (display:none) too: hiding does not make it safe."""
    added, code = DANGEROUS[name]
    if hidden:
        added = f'<div style="display:none">{added}</div>'
    at = SPOTS[spot]
    cut = CLEAN_HTML.index(at) + (0 if at.startswith("\n") else len(at))
    found = codes(check(html=CLEAN_HTML[:cut] + added + CLEAN_HTML[cut:]))
    assert code in found, (name, spot, found)


ELEMENTS = st.sampled_from(
    ["a", "svg", "math", "script", "style", "div", "p", "form", "iframe", "meta", "base"]
)
ATTRIBUTES = st.sampled_from(
    [
        "",
        " onclick=x",
        ' href="javascript:x"',
        " xlink:href=&#106;avascript:x",
        ' style="background:url(https://x.example/a)"',
        " http-equiv=refresh",
        " href=https://a.example/",
        ' rel=stylesheet href="//x.example/s.css"',
        " alt",
        " src=\x00",
    ]
)
PIECES = st.one_of(
    st.builds(lambda e, a: f"<{e}{a}>", ELEMENTS, ATTRIBUTES),
    st.builds(lambda e: f"</{e}>", ELEMENTS),
    st.sampled_from(
        [
            "https://x.example/",
            "@import 'https://x.example/a.css';",
            "u\\72l(",
            "<!--",
            "&#",
            "\ud800",
            "\x00",
        ]
    ),
    st.text(max_size=20),
)


@settings(max_examples=200, deadline=None)
@given(st.lists(PIECES, max_size=200))
def test_checks_never_raise_and_stay_bounded_on_arbitrary_html(pieces: list[str]) -> None:
    """Bounded input, no timing assertion (pytest-timeout bounds the run): the findings are
    known codes in order, one line each, at most 10 of a kind."""
    found = check(text="x", html="".join(pieces))
    assert [f.code for f in found] == sorted(codes(found), key=CODES.index)
    for code in set(codes(found)):
        assert codes(found).count(code) <= 10 or code in ("img_alt", "link_text_mismatch")
    for f in found:
        assert "\n" not in f.detail and "\r" not in f.detail and len(f.detail) < 400
        str(f).encode("utf-8")
