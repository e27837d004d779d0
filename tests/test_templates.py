"""The template store and the sandboxed environment, on real files in tmp_path."""

from __future__ import annotations

import os
import signal
import threading
import time
import tracemalloc
from pathlib import Path

import pandas as pd
import pytest
from bounded import finishes
from hypothesis import given
from hypothesis import settings as hsettings
from hypothesis import strategies as st
from merge_field_table import BCART_KEYS

import bcartnb.templates as templates_mod
from bcartnb.exceptions import TemplateError
from bcartnb.templates import (
    FIELD_ALIASES,
    SAMPLE_MEMBER,
    Template,
    TemplateStore,
    check_renders,
    compile_template,
    context_builder,
    make_environment,
    parse_template_file,
    render_template_file,
)


def render(source: str, member: dict[str, object], html: bool = False, name: str = "t") -> str:
    t = compile_template(source, name, "body", html)
    return t.render(context_builder(t.names)(member), member.get("id"))


def test_store_save_list_get_rename_delete(tmp_path: Path) -> None:
    store = TemplateStore(tmp_path / "templates")
    assert store.list() == []
    t = Template(
        "新商品のご案内", "{{ 会社名 }} 様 新商品", "{{ 担当者名 }} 様\n本文\n", html=False
    )
    path = store.save(t)
    assert path.name == "新商品のご案内.txt"
    assert store.list() == ["新商品のご案内"]
    assert store.get("新商品のご案内") == t
    store.save(Template("HTML版", "件名", "<p>{{ comp_name }}</p>", html=True))
    assert store.list() == ["HTML版", "新商品のご案内"]
    store.rename("新商品のご案内", "12月 新商品")
    assert store.list() == ["12月 新商品", "HTML版"]
    assert store.get("12月 新商品").body == t.body
    store.delete("HTML版")
    assert store.list() == ["12月 新商品"]
    assert sorted(p.name for p in (tmp_path / "templates").iterdir()) == ["12月 新商品.txt"]


def test_store_errors_name_what_is_wrong(tmp_path: Path) -> None:
    store = TemplateStore(tmp_path)
    store.save(Template("a", "s", "b"))
    store.save(Template("b", "s", "b"))
    with pytest.raises(TemplateError, match=r"template 'zz' not found .*have: a, b"):
        store.get("zz")
    with pytest.raises(TemplateError, match="'b' already exists"):
        store.rename("a", "b")
    with pytest.raises(TemplateError, match="'nope' not found"):
        store.rename("nope", "c")
    with pytest.raises(TemplateError, match="'nope' not found"):
        store.delete("nope")
    assert store.list() == ["a", "b"]


@pytest.mark.parametrize(
    "name",
    ["../evil", "a/b", "a\\b", "..", ".hidden", "", "  ", "CON", "com1", "a:b", "x\ny", "end."],
)
def test_unsafe_names_are_refused(tmp_path: Path, name: str) -> None:
    store = TemplateStore(tmp_path / "t")
    with pytest.raises(TemplateError, match="template name"):
        store.save(Template(name, "s", "b"))
    with pytest.raises(TemplateError, match="template name"):
        store.get(name)
    assert not (tmp_path / "evil.txt").exists()
    assert not (tmp_path / "t").exists()


def test_save_refuses_a_template_that_does_not_render(tmp_path: Path) -> None:
    store = TemplateStore(tmp_path)
    # the sample member has no 業種 at all: the template's field, not a blank value
    with pytest.raises(TemplateError, match=r"'bad' \(body\) line 3: unknown field '業種'"):
        store.save(Template("bad", "件名", "{{ 会社名 }}\n\n{{ 業種 }}\n"))
    with pytest.raises(TemplateError, match=r"'bad' \(body\) line 1: field '業種' is missing"):
        store.save(Template("bad", "件名", "{{ 業種 }}\n"), sample_member={"id": 1, "業種": " "})
    with pytest.raises(TemplateError, match=r"'bad' \(subject\) line 1: .*"):
        store.save(Template("bad", "{{ 会社名 ", "本文"))
    with pytest.raises(TemplateError, match="one line"):
        store.save(Template("bad", "a\nBcc: x@example.com", "本文"))
    assert store.list() == []
    # with the real member that has the custom field, it renders and is stored
    store.save(Template("ok", "件名", "{{ 業種 }}\n"), sample_member={"id": 1, "業種": "小売"})
    assert store.list() == ["ok"]


def test_signature_is_a_place_not_a_member_field(tmp_path: Path) -> None:
    store = TemplateStore(tmp_path)
    store.save(Template("sig", "件名", "{{ 会社名 }}\n\n{{ 署名 }}\n"))
    store.save(Template("sig-html", "件名", "<p>{{ signature }}</p>", html=True))
    assert store.list() == ["sig", "sig-html"]
    assert templates_mod.columns_for({"会社名", "署名", "signature"}) == {"comp_name"}
    assert templates_mod.context_builder({"署名"})({"署名": "x", "signature": "y"}) == {}


def test_hand_written_file_with_bom_and_crlf(tmp_path: Path) -> None:
    text = (
        '\ufeff+++\r\nsubject = "【ご案内】{{ 会社名 }} 様"\r\nhtml = true\r\n+++\r\n'
        "<p>本文</p>\r\n"
    )
    (tmp_path / "手書き.txt").write_bytes(text.encode("utf-8"))
    (tmp_path / "notes.md").write_text("not a template", encoding="utf-8")
    store = TemplateStore(tmp_path)
    assert store.list() == ["手書き"]
    assert store.get("手書き") == Template(
        "手書き", "【ご案内】{{ 会社名 }} 様", "<p>本文</p>\n", True
    )


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("subject = 'x'\n", "must start with a '\\+\\+\\+' line"),
        ("+++\nsubject = 'x'\n", "no closing"),
        ("+++\nsubject = \n+++\n", "not valid TOML"),
        ("+++\nsubject = 'x'\nfrom = 'y'\n+++\n", "unknown header key 'from'"),
        ("+++\nhtml = true\n+++\n", "'subject' .* is required"),
        ("+++\nsubject = 'x'\nhtml = 'yes'\n+++\n", "'html' must be true or false"),
    ],
)
def test_bad_files_name_the_file(tmp_path: Path, text: str, message: str) -> None:
    (tmp_path / "壊れた.txt").write_text(text, encoding="utf-8")
    with pytest.raises(TemplateError, match=rf"壊れた\.txt: .*{message}"):
        TemplateStore(tmp_path).get("壊れた")


@hsettings(max_examples=150, deadline=None)
@given(
    subject=st.text(st.characters(exclude_categories=("Cs",)), max_size=60),
    body=st.text(st.characters(exclude_categories=("Cs",)), max_size=200),
    html=st.booleans(),
)
def test_file_format_round_trips(subject: str, body: str, html: bool) -> None:
    body = body.replace("\r", "")  # the store normalises line ends; bodies are text
    t = Template("名前", subject, body, html)
    assert parse_template_file(render_template_file(t), "名前", "x") == t


def test_demo_templates_load_and_render(repo_root: Path) -> None:
    store = TemplateStore(repo_root / "data" / "templates")
    names = store.list()
    assert len(names) >= 3
    kinds = {store.get(n).html for n in names}
    assert kinds == {True, False}
    for name in names:
        check_renders(store.get(name), SAMPLE_MEMBER)
        assert "配信停止" in store.get(name).body


def test_aliases_render_member_fields() -> None:
    member = {
        "id": 12,
        "comp_name": "株式会社テスト",
        "tanto_last_name": "佐藤",
        "tanto_first_name": "一郎",
        "pref": "大阪府",
        "address1": "大阪市北区",
        "address2": "梅田1-1",
        "address3": "梅田ビル3F",
        "業種": "卸売",
        "カスタム項目(1)": "ゴールド",
    }
    out = render(
        "{{ 会社名 }}|{{ 担当者名 }}|{{ 担当者姓 }}|{{ 担当者名前 }}|{{ 都道府県 }}|{{ 住所 }}|"
        "{{ 会員ID }}|{{ comp_name }}|{{ 業種 }}|{{ member['カスタム項目(1)'] }}",
        member,
    )
    assert out == (
        "株式会社テスト|佐藤 一郎|佐藤|一郎|大阪府|大阪府大阪市北区梅田1-1 梅田ビル3F|"
        "12|株式会社テスト|卸売|ゴールド"
    )
    assert render("{{ 担当者名 }}", {"tanto_last_name": "佐藤", "tanto_first_name": None}) == "佐藤"


def test_every_alias_points_at_a_canonical_column() -> None:
    for alias, target in FIELD_ALIASES.items():
        if isinstance(target, str):
            assert target in BCART_KEYS, alias
        else:
            assert target(SAMPLE_MEMBER), alias
    assert set(SAMPLE_MEMBER) >= BCART_KEYS


@pytest.mark.parametrize("missing", [None, pd.NA, float("nan"), pd.NaT, "", "  "])
def test_missing_values_are_errors_naming_template_line_field(missing: object) -> None:
    member = {"id": 5, "comp_name": missing}
    with pytest.raises(
        TemplateError,
        match=r"template 'お知らせ' \(body\) line 2: field '会社名' is missing or empty "
        r"for member 5",
    ):
        render("こんにちは\n{{ 会社名 }} 様", member, name="お知らせ")
    with pytest.raises(TemplateError) as info:
        render("こんにちは\n{{ 会社名 }} 様", member, name="お知らせ")
    assert info.value.ja.startswith(
        "テンプレート「お知らせ」の本文 2行目: 会員 5 の「会社名」が空欄か、"
        "そういう項目がありません。"
    )
    with pytest.raises(TemplateError, match="'担当者名' is missing"):
        render("{{ 担当者名 }}", {"id": 5, "tanto_last_name": missing})


@pytest.mark.parametrize(
    "source",
    [
        "{{ ''.__class__ }}",
        "{{ ''.__class__.__mro__ }}",
        "{{ ''.__class__.__mro__[1].__subclasses__() }}",
        "{{ member.__class__ }}",
        "{{ cycler.__init__.__globals__ }}",
    ],
)
def test_sandbox_refuses_python_internals(source: str) -> None:
    with pytest.raises(TemplateError, match=r"template 't' \(body\) line 1"):
        render(source, {"id": 1, "comp_name": "x"})


def test_autoescape_only_in_html() -> None:
    member = {"id": 1, "comp_name": "A&B <商事>"}
    assert render("{{ 会社名 }}", member, html=True) == "A&amp;B &lt;商事&gt;"
    assert render("{{ 会社名 }}", member, html=False) == "A&B <商事>"
    assert make_environment(True).autoescape is True
    assert make_environment(False).autoescape is False


# --- limits: templates that never end, or grow without end ---------------------------------


def limited(source: str, timeout: float = 0.3, max_size: int = 100_000) -> str:
    t = compile_template(source, "t", "body", timeout=timeout, max_size=max_size)
    return t.render({}, 7)


@pytest.mark.parametrize(
    "source",
    [
        "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}",
        # no call inside the loops: only the loop's own clock can stop it
        "{% set xs = range(100000)|list %}{% for i in xs %}{% for j in xs %}{% endfor %}"
        "{% endfor %}",
        "{% macro f(n) %}{% if n %}{{ f(n - 1) }}{{ f(n - 1) }}{% endif %}{% endmacro %}"
        "{{ f(60) }}",
        "{% for i in range(100000) recursive %}{% if loop.depth < 3 %}{{ loop(range(100000)) }}"
        "{% endif %}{% endfor %}",
    ],
)
def test_a_render_that_never_ends_is_stopped_by_the_clock(source: str) -> None:
    with pytest.raises(TemplateError) as info:
        finishes(lambda: limited(source))
    assert "template 't' (body) line 1 for member 7: rendering took longer than " in str(info.value)
    assert "render_timeout (0.3 s)" in str(info.value)
    assert info.value.ja.startswith(
        "テンプレート「t」の本文 1行目: 会員 7 のメールの作成が制限時間"
    )


@pytest.mark.parametrize(
    ("source", "needle"),
    [
        ("{{ (10**100000)**100000 }}", "the power 10**100000 is too large"),
        ("{{ 'a' * 10**8 }}", "a repeated value would be 100,000,000 long"),
        ("{{ [0] * 10**8 }}", "a repeated value would be 100,000,000 long"),
        ("{{ 'a'.ljust(10**9) }}", "str.ljust() width would be 1,000,000,000 long"),
        ("{{ 'a'|center(10**9) }}", "the center filter's width would be"),
        ("{{ '{:>999999999}'.format('a') }}", "a format width is too large"),
        ("{{ '{:>{w}}'.format('a', w=10**9) }}", "a format width is too large"),
        ("{{ '%*s' % (10**9, 'a') }}", "a format width is too large"),
        ("{{ '%.99999999f' % 1.5 }}", "a format width is too large"),
        ("{{ '%99999999s'|format('a') }}", "a format width is too large"),
        ("{{ ('a' * 1000)|replace('a', 'b' * 1000) }}", "a replaced value would be 1,000,000 long"),
        ("{{ (['x' * 1000] * 1000)|join }}", "the join filter's result would be 1,000,000 long"),
        (
            "{% set ns = namespace(s='ab') %}{% for i in range(60) %}"
            "{% set ns.s = ns.s ~ ns.s %}{% endfor %}",
            "a value would be 131,072 long",
        ),
        ("{% for i in range(1000) %}{{ 'x' * 1000 }}{% endfor %}", "the output would be"),
        ("{{ lipsum(10**6) }}", "lipsum() would be"),
    ],
)
def test_a_value_larger_than_a_mail_is_refused_before_it_is_built(source: str, needle: str) -> None:
    # "before": the refusal names the value it would have built, not the render clock, and
    # the render never held more than a small mail's worth of memory
    tracemalloc.start()
    try:
        with pytest.raises(TemplateError) as info:
            finishes(lambda: limited(source, timeout=60))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 10_000_000
    assert "render_timeout" not in str(info.value)
    assert needle in str(info.value) and "for member 7" in str(info.value)
    assert "max_mail_bytes (100,000)" in str(info.value) or "too large" in str(info.value)
    assert info.value.ja.startswith("テンプレート「t」の本文")


def test_compiling_a_huge_constant_does_not_hang() -> None:
    """Jinja folds constant expressions at compile time; the limited ones are left for later.

    Folded, the power alone has ten billion digits: compiling would not end in hours.
    """
    finishes(lambda: compile_template("{{ (10**100000)**100000 }} {{ 'a' * 10**10 }}", "t", "body"))


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("{% for i in range(3) %}{{ loop.index }}/{{ loop.length }} {% endfor %}", "1/3 2/3 3/3 "),
        ("{{ '{:,}'.format(12345678901) }}円 {{ '%d円' % 1500 }}", "12,345,678,901円 1500円"),
        (
            "{{ 'ID 20261127 {:>3}'.format(1) }} {{ '%s 20261127' % 1 }}",
            "ID 20261127   1 1 20261127",
        ),
        ("{{ 2**64 }} {{ 1.08 * 1000 }} {{ 'ab' * 3 }}", "18446744073709551616 1080.0 ababab"),
        ("{{ ['a', 'b']|join(', ') }} {{ 'x'|center(5) }}", "a, b   x  "),
        (
            "{% for row in [[1, 2], [3]] recursive %}{% if row is iterable %}"
            "{{ loop(row) }}{% else %}{{ row }}{% endif %}{% endfor %}",
            "123",
        ),
    ],
)
def test_ordinary_templates_are_not_limited(source: str, expected: str) -> None:
    # the limits on size and operations, not the clock: the render clock is wall time, and a
    # loaded machine that pauses the process 0.3 s mid-render would stop an ordinary template
    assert limited(source, timeout=60) == expected


def test_the_clock_needs_no_signal_in_a_thread_or_a_forked_child() -> None:
    """A Jupyter kernel renders in other threads, the spool composer in a forked child."""
    never = "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}"
    errors: list[BaseException] = []

    def run() -> None:
        try:
            limited(never, timeout=0.2)
        except TemplateError as err:
            errors.append(err)

    thread = threading.Thread(target=run)
    thread.start()
    thread.join(10)
    assert not thread.is_alive() and len(errors) == 1
    pid = os.fork()
    if pid == 0:  # the child: exit 3 when the render was stopped
        code = 1
        try:
            limited(never, timeout=0.2)
        except TemplateError:
            code = 3
        finally:
            os._exit(code)
    deadline = time.monotonic() + 10
    while (done := os.waitpid(pid, os.WNOHANG))[0] == 0 and time.monotonic() < deadline:
        time.sleep(0.05)
    if done[0] == 0:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
    assert done[0] == pid and os.waitstatus_to_exitcode(done[1]) == 3


def test_save_refuses_html_too_deep_for_the_composer(tmp_path: Path) -> None:
    """As written and as rendered for the sample member (a loop), naming template and line;
    nothing is stored. A text template may nest anything: it is never parsed as HTML."""
    store = TemplateStore(tmp_path)
    deep = "<p>{{ 会社名 }}</p>\n" + "<div>" * 250 + "</div>" * 250
    with pytest.raises(TemplateError) as info:
        store.save(Template("深い", "件名", deep, html=True))
    assert str(info.value) == (
        "template '深い' (body): HTML nests deeper than 200 levels at line 2; simplify the nesting"
    )
    assert info.value.ja == (
        "テンプレート「深い」の本文: HTMLの入れ子が深すぎます（2行目で 200 段を超えます）。"
        "入れ子を減らしてください。"
    )
    looped = "<p>{{ 会社名 }}</p>\n\n{% for i in range(250) %}<div>{% endfor %}"
    with pytest.raises(TemplateError, match="at line 3; simplify"):
        store.save(Template("ループ", "件名", looped, html=True))
    assert store.list() == []
    store.save(Template("テキスト", "件名", deep, html=False))
    store.save(Template("浅い", "件名", "<div>" * 150 + "{{ 会社名 }}", html=True))
    assert store.list() == ["テキスト", "浅い"]


def test_branches_are_measured_as_rendered_not_as_written(tmp_path: Path) -> None:
    """Both branches of an {% if %} open a <div> as written; one does as rendered: 250 such
    blocks are shallow HTML, stored and composed."""
    from bcartnb.compose import Composer, Draft
    from bcartnb.settings import Settings

    body = (
        "{% if id %}<div class='a'>{% else %}<div class='b'>{% endif %}{{ 会社名 }}</div>\n" * 250
    )
    TemplateStore(tmp_path).save(Template("分岐", "件名", body, html=True))
    settings = Settings(from_addr="shop@example.co.jp", from_name="見本商事")
    draft = Draft("件名", body, html=True, template="分岐")
    mail = Composer(draft, settings, "c-1").compose(SAMPLE_MEMBER | {"email": "a@example.co.jp"})
    assert mail.html is not None and mail.html.count("<div") == 250
