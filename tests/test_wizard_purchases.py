"""The wizard's 購入履歴 section (issue 26), driven from Python like a user.

Every control is held to the filter dict a campaign file takes and to what
:func:`bcartnb.filters.apply_filter` selects from the same joined frame (the one matcher);
the campaign made from it records the orders, is planned without a second join, sends only
to the selected members through a real SMTP server, and ``bcartnb wizard --orders`` copies
the notebook that builds such a wizard. The orders are dated from today, so the groups are
the same on any day.
"""

from __future__ import annotations

import datetime as dt
import html
from collections.abc import Callable
from pathlib import Path
from zoneinfo import ZoneInfo

import nbformat
import pandas as pd
import pytest
from hypothesis import given
from hypothesis import settings as hsettings
from hypothesis import strategies as st
from smtp_servers import TestServer
from test_cli_run import bcartnb
from test_cli_wizard import clean_env, code_of, make_shop
from test_wizard_screens import HEADER, member_mails, rows, settings_for

from bcartnb.campaign import members_with_orders
from bcartnb.cli.wizard import WIZARD_NOTEBOOK
from bcartnb.exceptions import FilterError
from bcartnb.filters import apply_filter, describe_filter
from bcartnb.members import read_members
from bcartnb.orders import GROUPS, read_orders, with_purchases
from bcartnb.report.notebook import demo_path
from bcartnb.settings import PurchaseSettings, Settings
from bcartnb.widgets import Wizard
from bcartnb.widgets.purchase_filters import NO_ORDERS_HINT, PurchaseFilters

Server = Callable[..., TestServer]
AS_OF = dt.date(2026, 12, 1)
ORDERS_HEADER = "受注ID,会員ID,受注日時,対応状況,合計金額,商品コード,商品名\r\n"


#: one "today" for the order file and the picks alike, so a run across Tokyo's midnight
#: compares the same days (the groups, decided by the wizard's own today, have days to spare)
TODAY = dt.datetime.now(ZoneInfo("Asia/Tokyo")).date()


def day(days_ago: int) -> dt.date:
    return TODAY - dt.timedelta(days=days_ago)


def line(
    order: int, member: int, days_ago: int, total: int, code: str, status: str = "発送済"
) -> str:
    when = f"{day(days_ago):%Y/%m/%d} 10:00:00"
    return f'{order},{member},{when},{status},"{total:,}",{code},商品{code}\r\n'


def orders_text() -> str:
    """1001 未購入; 1002 新規 (A-100); 1003 休眠; 1004 離反; 1005 優良 (A-100, C-300);
    1006 一般; 1007 only a cancelled order (未購入)."""
    out = [
        line(1, 1002, 10, 3_000, "A-100"),
        line(2, 1003, 200, 8_000, "B-200"),
        line(3, 1004, 400, 9_000, "B-200"),
        line(4, 1006, 120, 5_000, "C-300"),
        line(5, 1006, 30, 5_000, "<script>x</script>"),
        line(6, 1007, 3, 7_000, "A-100", status="キャンセル"),
    ]
    out += [line(10 + i, 1005, 5 + 30 * i, 100_000, ("A-100", "C-300")[i % 2]) for i in range(10)]
    return ORDERS_HEADER + "".join(out)


@pytest.fixture
def files(tmp_path: Path) -> tuple[Path, Path]:
    members = tmp_path / "members.csv"
    members.write_text(HEADER + rows(7), "utf-8")
    orders = tmp_path / "受注.csv"
    orders.write_bytes(orders_text().encode("cp932"))
    return members, orders


@pytest.fixture
def settings(tmp_path: Path, repo_root: Path, smtp_server: Server) -> Settings:
    return settings_for(tmp_path, repo_root, smtp_server(), "プラン10")


@pytest.fixture
def wizard(files: tuple[Path, Path], settings: Settings, tmp_path: Path) -> Wizard:
    members, orders = files
    return Wizard(members, settings, orders=orders, member_folders=[tmp_path])


def found(w: Wizard) -> list[int]:
    return list(w.table.result_ids)


def apply(w: Wizard) -> list[int]:
    w.filter_step.apply.click()
    assert w.status.kind != "error", w.status.value
    return found(w)


def matcher(w: Wizard) -> list[int]:
    """What the one matcher selects from the wizard's own frame with the wizard's filter."""
    return apply_filter(w.members, w.filter)["id"].tolist()


def test_the_section_offers_the_groups_and_products_members_have(wizard: Wizard) -> None:
    p = wizard.filter_step.purchases
    assert p.available and not p.group.disabled and not p.product.disabled
    assert p.group.options == (
        ("未購入（2人）", "未購入"),
        ("離反（1人）", "離反"),
        ("休眠（1人）", "休眠"),
        ("新規（1人）", "新規"),
        ("優良（1人）", "優良"),
        ("一般（1人）", "一般"),
    )
    # 購入商品 holds each product's code and, after the codes, its name: either can be picked
    codes = ("<script>x</script>", "A-100", "B-200", "C-300")
    assert p.product.options == (*codes, *(f"商品{code}" for code in codes))
    assert p in wizard.filter_step.children
    assert set(p.controls) <= set(wizard.filter_step.controls)
    assert wizard.filter_step.filter == {}  # nothing picked: no condition


@pytest.mark.parametrize(
    ("pick", "want_filter", "want_ids"),
    [
        (lambda p: setattr(p.group, "value", ("休眠",)), {"顧客グループ": ["休眠"]}, [1003]),
        (
            lambda p: setattr(p.group, "value", ("未購入", "優良")),
            {"顧客グループ": ["未購入", "優良"]},
            [1001, 1005, 1007],
        ),
        (
            lambda p: setattr(p.last_before, "value", day(100)),
            {"最終購入日": {"before": day(100).isoformat()}},
            [1003, 1004],
        ),
        (
            lambda p: setattr(p.last_after, "value", day(11)),
            {"最終購入日": {"after": day(11).isoformat()}},
            [1002, 1005],
        ),
        (lambda p: setattr(p.min_count, "value", 3), {"購入回数": {"min": 3}}, [1005]),
        (
            lambda p: setattr(p.min_total, "value", 10_000),
            {"購入金額合計": {"min": 10_000}},
            [1005, 1006],
        ),
        (
            lambda p: setattr(p.product, "value", "A-100"),
            {"購入商品": {"contains": "A-100"}},
            [1002, 1005],
        ),
        (
            lambda p: setattr(p.product, "value", " C-300 "),
            {"購入商品": {"contains": "C-300"}},
            [1005, 1006],
        ),
        (lambda p: setattr(p.product, "value", "A-10"), {"購入商品": {"contains": "A-10"}}, []),
    ],
)
def test_each_control_is_the_campaign_filter_and_the_one_matcher(
    wizard: Wizard, pick: Callable[[PurchaseFilters], None], want_filter: dict, want_ids: list[int]
) -> None:
    p = wizard.filter_step.purchases
    pick(p)
    assert p.filter == want_filter
    assert wizard.filter_step.filter == want_filter
    assert p.words.value.endswith(f">{html.escape(describe_filter(want_filter))}</div>")
    assert apply(wizard) == want_ids
    assert wizard.filter == want_filter
    assert matcher(wizard) == want_ids
    assert f"検索結果: {len(want_ids):,}件" in wizard.status.value


def test_controls_together_are_anded_with_the_profile_controls(wizard: Wizard) -> None:
    p = wizard.filter_step.purchases
    p.last_after.value = day(50)
    p.last_before.value = day(4)
    p.min_total.value = 4_000
    wizard.filter_step.pref.value = ("東京都",)
    flt = wizard.filter_step.filter
    assert flt == {
        "pref": ["東京都"],
        "最終購入日": {"after": day(50).isoformat(), "before": day(4).isoformat()},
        "購入金額合計": {"min": 4_000},
    }
    assert apply(wizard) == [1005, 1006] == matcher(wizard)  # 1002 bought for 3,000 only
    assert "最終購入日が " in p.words.value and "より後" in p.words.value


def test_dates_the_wrong_way_round_are_said_not_guessed(wizard: Wizard) -> None:
    p = wizard.filter_step.purchases
    p.last_after.value = day(10)
    p.last_before.value = day(100)
    before = found(wizard)
    wizard.filter_step.apply.click()
    assert wizard.status.kind == "error"
    assert "最終購入日" in wizard.status.value and "より後です" in wizard.status.value
    assert found(wizard) == before  # the last result stays


def test_clear_and_a_hostile_product_code(wizard: Wizard) -> None:
    p = wizard.filter_step.purchases
    p.product.value = "<script>x</script>"
    assert "<script>" not in p.words.value and "&lt;script&gt;" in p.words.value
    assert apply(wizard) == [1006]
    p.group.value = ("一般",)
    p.min_count.value = 2
    p.min_total.value = 5
    p.last_after.value = day(300)
    p.last_before.value = day(1)
    wizard.filter_step.reset.click()
    assert p.filter == {} and p.words.value == ""
    assert (p.group.value, p.min_count.value, p.min_total.value, p.product.value) == ((), 0, 0, "")
    assert p.last_after.value is None and p.last_before.value is None
    assert apply(wizard) == list(range(1001, 1008))


def test_the_category_control_is_the_campaign_filter_and_the_one_matcher(
    files: tuple[Path, Path], settings: Settings, tmp_path: Path
) -> None:
    """購入カテゴリ: the categories members bought (未分類 for a product without one), picked
    or typed, ``contains`` one category exactly, ANDed with 購入商品 and cleared by リセット."""
    orders = tmp_path / "カテゴリ付き受注.csv"
    head = ORDERS_HEADER.replace("\r\n", ",商品カテゴリ\r\n")
    lines = orders_text().splitlines(True)[1:]
    cats = ["果物", "野菜", "<b>x</b>", "果物", "", "果物", *(["果物"] * 10)]  # 1005's ten: 果物
    body = [f"{text[:-2]},{cat}\r\n" for text, cat in zip(lines, cats, strict=True)]
    orders.write_bytes((head + "".join(body)).encode("cp932"))
    w = Wizard(files[0], settings, orders=orders, member_folders=[tmp_path])
    p = w.filter_step.purchases
    assert p.category in w.filter_step.controls and not p.category.disabled
    # order 6 (果物) was cancelled and order 5's product has no category: 未分類
    assert p.category.options == ("<b>x</b>", "未分類", "果物", "野菜")
    for pick, ids in (
        ("果物", [1002, 1005, 1006]),
        (" 未分類 ", [1006]),
        ("野", []),
        ("<b>x</b>", [1004]),
    ):
        p.category.value = pick
        want = {"購入カテゴリ": {"contains": pick.strip()}}
        assert p.filter == want == w.filter_step.filter
        assert p.words.value.endswith(f">{html.escape(describe_filter(want))}</div>")
        assert "<b>" not in p.words.value
        assert apply(w) == ids == matcher(w)
    p.category.value = "野菜"
    p.product.value = "B-200"
    assert p.filter == {"購入商品": {"contains": "B-200"}, "購入カテゴリ": {"contains": "野菜"}}
    assert apply(w) == [1003] == matcher(w)
    w.filter_step.reset.click()
    assert p.category.value == "" and p.filter == {}
    # an export without the category column: every bought product is 未分類
    assert files[1] != orders
    plain = Wizard(files[0], settings, orders=files[1], member_folders=[tmp_path])
    assert plain.filter_step.purchases.category.options == ("未分類",)


def test_without_orders_the_section_says_how_and_builds_nothing(
    files: tuple[Path, Path], settings: Settings, tmp_path: Path
) -> None:
    w = Wizard(files[0], settings, member_folders=[tmp_path])
    p = w.filter_step.purchases
    assert not p.available
    assert all(c.disabled for c in p.controls)
    assert html.escape(NO_ORDERS_HINT) in p.words.value
    assert len(p.children) == 2  # the title and the hint: no disabled controls on screen
    p.min_count.value = 3  # a disabled control set from code still builds no key
    assert p.filter == {} and w.filter_step.filter == {}
    assert "購入回数" not in w.members.columns
    assert apply(w) == list(range(1001, 1008))


def test_an_empty_order_file_makes_everyone_unbought(
    files: tuple[Path, Path], settings: Settings, tmp_path: Path
) -> None:
    empty = tmp_path / "empty.csv"
    empty.write_bytes(ORDERS_HEADER.encode("cp932"))
    w = Wizard(files[0], settings, orders=empty, member_folders=[tmp_path])
    p = w.filter_step.purchases
    assert p.available and p.group.options == (("未購入（7人）", "未購入"),)
    assert p.product.options == () and p.product.disabled
    assert p.category.options == () and p.category.disabled
    p.group.value = ("未購入",)
    assert apply(w) == list(range(1001, 1008))


def test_members_picked_in_the_wizard_get_the_orders_too(
    files: tuple[Path, Path], settings: Settings, tmp_path: Path
) -> None:
    members, orders = files
    w = Wizard(None, settings, orders=orders, member_folders=[tmp_path])
    assert not w.filter_step.purchases.group.options  # no members yet: nothing to pick
    w.load_members(members)
    assert w.status.kind != "error", w.status.value
    p = w.filter_step.purchases
    assert p.available and ("休眠（1人）", "休眠") in p.group.options
    p.group.value = ("休眠",)
    assert apply(w) == [1003]


def test_a_campaign_from_the_section_records_the_orders_and_sends_to_them_only(
    wizard: Wizard, files: tuple[Path, Path], settings: Settings
) -> None:
    p = wizard.filter_step.purchases
    p.group.value = ("休眠", "離反")
    assert apply(wizard) == [1003, 1004]
    wizard.send_all.click()
    assert wizard.stage == "compose", wizard.status.value
    wizard.compose.subject.value = "{{ 会社名 }} 様 お久しぶりです"
    wizard.compose.body.value = "またのご注文をお待ちしています。"
    wizard.compose.to_confirm.click()
    assert wizard.stage == "confirm", wizard.status.value
    spec = wizard.spec
    assert spec is not None and spec.orders == files[1].resolve()
    assert spec.filter == {"顧客グループ": ["休眠", "離反"]}
    assert "顧客グループが 休眠 または 離反" in wizard.confirm.counts.value
    assert "送信件数</b>: 2件" in wizard.confirm.counts.value
    wizard.confirm.send.click()
    assert wizard.result is not None and wizard.result.sent == 2, wizard.status.value
    # the campaign replays from its record: the orders joined again from the file
    again = members_with_orders(read_members(files[0]), spec.orders, settings)
    assert apply_filter(again, spec.filter)["id"].tolist() == [1003, 1004]


def test_the_mail_goes_to_the_selected_members(
    files: tuple[Path, Path], tmp_path: Path, repo_root: Path, smtp_server: Server
) -> None:
    server = smtp_server()
    settings = settings_for(tmp_path, repo_root, server, "プラン10")
    w = Wizard(files[0], settings, orders=files[1], member_folders=[tmp_path])
    w.filter_step.purchases.product.value = "A-100"
    assert apply(w) == [1002, 1005]
    w.send_all.click()
    w.compose.subject.value = "A-100 のご案内"
    w.compose.body.value = "本文"
    w.compose.to_confirm.click()
    w.confirm.send.click()
    assert w.result is not None and w.result.sent == 2, w.status.value
    assert server.wait_for(3)  # two members and the administrator's copy
    assert set(member_mails(server)) == {"u1002@example.co.jp", "u1005@example.co.jp"}


def test_bcartnb_wizard_orders_copies_a_notebook_that_builds_the_section(
    tmp_path: Path, files: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    shop = make_shop(tmp_path)
    members, orders = files
    env = clean_env(tmp_path)
    missing = bcartnb(
        "wizard", "--no-start", "--orders", str(tmp_path / "nai.csv"), env=env, cwd=shop
    )
    assert missing.returncode == 2 and "受注ファイル" in missing.stderr
    assert not (shop / WIZARD_NOTEBOOK).exists()
    done = bcartnb(
        "wizard",
        "--no-start",
        "--members",
        str(members),
        "--orders",
        str(orders),
        env=env,
        cwd=shop,
    )
    assert done.returncode == 0, done.stderr
    nbformat.validate(nbformat.read(shop / WIZARD_NOTEBOOK, as_version=4))
    monkeypatch.chdir(shop)
    scope: dict[str, object] = {}
    for source in code_of(shop / WIZARD_NOTEBOOK):
        exec(compile(source, WIZARD_NOTEBOOK, "exec"), scope)
    assert scope["orders_path"] == str(orders)
    w = scope["wizard"]
    assert isinstance(w, Wizard) and w.filter_step.purchases.available
    # a second run keeps the marketer's copy and says where the orders go
    again = bcartnb("wizard", "--no-start", "--orders", str(orders), env=env, cwd=shop)
    assert again.returncode == 0 and "orders_path" in again.stdout


def test_the_tracked_wizard_notebook_has_no_orders_by_default(repo_root: Path) -> None:
    cells = code_of(repo_root / "notebooks" / WIZARD_NOTEBOOK)
    assert "\norders_path = None  #" in "\n" + cells[0]
    assert "orders=orders_path" in cells[1]


def test_a_keyword_and_a_purchase_condition_together(wizard: Wizard) -> None:
    """The keyword box looks in the profile; the purchase keys narrow what it found."""
    wizard.filter_step.text.value = "テスト商事1005"
    assert apply(wizard) == [1005]
    wizard.filter_step.purchases.group.value = ("休眠",)
    assert apply(wizard) == []
    wizard.filter_step.purchases.group.value = ("優良",)
    assert apply(wizard) == [1005]
    wizard.send_all.click()  # a keyword result is sent as the ids it found
    assert wizard.checked == (1005,)


@pytest.fixture(scope="module")
def demo_joined() -> pd.DataFrame:
    members = read_members(demo_path("demo_members.csv"))
    orders = read_orders(demo_path("demo_orders.csv"))
    return with_purchases(members, orders, PurchaseSettings(), AS_OF)


@hsettings(max_examples=60, deadline=None)
@given(
    groups=st.lists(st.sampled_from(GROUPS), unique=True, max_size=3),
    after=st.one_of(st.none(), st.integers(0, 1200)),
    before=st.one_of(st.none(), st.integers(0, 1200)),
    count=st.integers(0, 15),
    total=st.integers(0, 2_000_000),
    product=st.one_of(
        st.sampled_from(["", "A-100", "E-500", " C-300\n", "A-10"]),
        st.text(alphabet="AB-0\r\n\x00<>", max_size=6),
    ),
)
def test_any_pick_means_what_the_controls_say(
    demo_joined: pd.DataFrame,
    groups: list[str],
    after: int | None,
    before: int | None,
    count: int,
    total: int,
    product: str,
) -> None:
    """The controls → the filter dict → the one matcher, held to a mask written from the
    controls' own words (groups, strictly after/before a day, at least, holds the code)."""
    p = PurchaseFilters(demo_joined)
    p.group.value = tuple(g for g in groups if g in [v for _, v in p.group.options])
    p.last_after.value = None if after is None else AS_OF - dt.timedelta(days=after)
    p.last_before.value = None if before is None else AS_OF - dt.timedelta(days=before)
    p.min_count.value, p.min_total.value = count, total
    p.product.value = product
    flt = p.filter
    df = demo_joined
    want = pd.Series(True, index=df.index)
    if p.group.value:
        want &= df["顧客グループ"].isin(p.group.value)
    last = df["最終購入日"].dt.date
    if p.last_after.value is not None:
        want &= last.notna() & (last > p.last_after.value)
    if p.last_before.value is not None:
        want &= last.notna() & (last < p.last_before.value)
    if count:
        want &= df["購入回数"] >= count
    if total:
        want &= df["購入金額合計"] >= total
    if product.strip():
        want &= df["購入商品"].map(lambda codes: product.strip() in list(codes))
    if p.last_after.value and p.last_before.value and p.last_after.value > p.last_before.value:
        with pytest.raises(FilterError, match="最終購入日"):
            apply_filter(df, flt)
        return
    got = apply_filter(df, flt)["id"].tolist()
    assert got == df["id"][want.fillna(False).astype(bool)].tolist()
    assert (p.words.value == "") == (flt == {})


# --- a wizard left open past Tokyo's midnight ------------------------------------------------

#: 23:59 on the day 1003's last purchase is 179 days old (not 休眠), then 00:01 (180: 休眠)
EVENING, MIDNIGHT_PAST = "2026-12-01T23:59:00+09:00", "2026-12-02T00:01:00+09:00"


def midnight_files(tmp_path: Path) -> tuple[Path, Path]:
    members = tmp_path / "members.csv"
    members.write_text(HEADER + rows(3), "utf-8")
    orders = tmp_path / "受注.csv"
    last = dt.date(2026, 12, 1) - dt.timedelta(days=179)
    text = ORDERS_HEADER + f'1,1003,{last:%Y/%m/%d} 10:00:00,発送済,"5,000",A-100,りんご\r\n'
    orders.write_bytes(text.encode("cp932"))
    return members, orders


def test_past_midnight_a_search_counts_the_groups_to_the_new_day(
    tmp_path: Path, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("BCARTNB_NOW", EVENING)
    members, orders = midnight_files(tmp_path)
    w = Wizard(members, settings, orders=orders, member_folders=[tmp_path])
    group = w.filter_step.purchases.group
    assert group.options == (("未購入（2人）", "未購入"), ("一般（1人）", "一般"))
    group.value = ("一般",)
    w.filter_step.apply.click()
    assert found(w) == [1003] and w.filter == {"顧客グループ": ["一般"]}
    assert "計算し直しました" not in w.status.value  # the same day: nothing to say

    monkeypatch.setenv("BCARTNB_NOW", MIDNIGHT_PAST)  # the kernel stayed up
    w.filter_step.apply.click()
    assert w.status.kind == "info", w.status.value
    assert "日付が変わったため、購入履歴" in w.status.value
    assert "今日（2026年12月2日）の日付で計算し直しました" in w.status.value
    # 180 days today: 1003 is 休眠, as a wizard opened now says; 一般 stays asked, now empty
    assert found(w) == [] and w.filter == {"顧客グループ": ["一般"]}
    assert w.members.set_index("id").loc[1003, "最終購入からの日数"] == 180
    assert group.options == (
        ("未購入（2人）", "未購入"),
        ("休眠（1人）", "休眠"),
        ("一般（0人）", "一般"),
    )
    fresh = Wizard(members, settings, orders=orders, member_folders=[tmp_path])
    assert fresh.members[["id", "顧客グループ"]].equals(w.members[["id", "顧客グループ"]])
    group.value = ("休眠",)
    w.filter_step.apply.click()  # once is enough: the same day says nothing of it again
    assert found(w) == [1003] and "計算し直しました" not in w.status.value


def test_past_midnight_the_confirmation_plans_with_the_new_days_groups(
    tmp_path: Path, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("BCARTNB_NOW", EVENING)
    members, orders = midnight_files(tmp_path)
    w = Wizard(members, settings, orders=orders, member_folders=[tmp_path])
    w.filter_step.purchases.group.value = ("一般",)
    w.filter_step.apply.click()
    assert found(w) == [1003]
    w.send_all.click()
    assert w.stage == "compose", w.status.value
    w.compose.subject.value = "{{ 会社名 }} 様"
    w.compose.body.value = "最終購入から {{ 最終購入からの日数 }} 日です。"

    monkeypatch.setenv("BCARTNB_NOW", MIDNIGHT_PAST)  # 確認画面へ after midnight
    w.compose.to_confirm.click()
    # 1003 is 休眠 today: the campaign for 一般 has nobody, and the screen says why
    assert w.plan is not None and w.plan.audience.selected.empty
    assert w.status.kind == "error" and "送信できる会員がいません" in w.status.value
    assert "日付が変わったため、購入履歴" in w.status.value
    assert w.confirm.send.disabled

    w.confirm.back.click()  # the same mail to today's 休眠
    w.selecting.back_to_select()
    w.filter_step.purchases.group.value = ("休眠",)
    w.filter_step.apply.click()
    assert found(w) == [1003] and "計算し直しました" not in w.status.value
    w.send_all.click()
    w.compose.to_confirm.click()
    assert w.stage == "confirm", w.status.value
    assert w.plan is not None and list(w.plan.audience.sendable["id"]) == [1003]
    assert w.plan.spec.orders == orders.resolve()
    mail = w.plan.composer.compose(w.plan.audience.sendable.iloc[0].to_dict())
    assert "最終購入から 180 日です。" in mail.text


def test_past_midnight_the_recount_note_stays_under_the_background_checks_verdict(
    tmp_path: Path, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A list past CHECK_AT_ONCE_UP_TO (here every list) is checked on a thread after the
    confirmation shows; its verdict replaces the status line, and the 注意 that the purchase
    history was counted again for today must still be under it."""
    import bcartnb.widgets.planning as planning

    monkeypatch.setattr(planning, "CHECK_AT_ONCE_UP_TO", 0)
    monkeypatch.setenv("BCARTNB_NOW", EVENING)
    members, orders = midnight_files(tmp_path)
    w = Wizard(members, settings, orders=orders, member_folders=[tmp_path])
    w.send_all.click()
    w.compose.subject.value = "{{ 会社名 }} 様"
    w.compose.body.value = "{{ 会社名 }} 様へのご案内です。"

    monkeypatch.setenv("BCARTNB_NOW", MIDNIGHT_PAST)
    w.compose.to_confirm.click()
    assert w.stage == "confirm", w.status.value
    check = w.mail_check
    assert check is not None and check.wait(120.0)
    said = w.status.value
    assert "全員分のメールを確かめました" in said, said
    assert said.count("日付が変わったため、購入履歴") == 1, said
    assert "今日（2026年12月2日）の日付で計算し直しました" in said

    w.confirm.back.click()  # the same day now: a new confirmation has nothing to add
    w.compose.to_confirm.click()
    check = w.mail_check
    assert check is not None and check.wait(120.0)
    assert "全員分のメールを確かめました" in w.status.value
    assert "計算し直しました" not in w.status.value


def test_a_frame_joined_yesterday_is_joined_again_when_planned(
    tmp_path: Path, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every face: a notebook holding yesterday's frame plans with today's groups."""
    from bcartnb.campaign import CampaignSpec, plan_campaign, purchases_stale

    monkeypatch.setenv("BCARTNB_NOW", EVENING)
    members, orders = midnight_files(tmp_path)
    joined = members_with_orders(read_members(members), orders, settings)
    assert joined.attrs["purchases_as_of"] == "2026-12-01" and not purchases_stale(joined)
    monkeypatch.setenv("BCARTNB_NOW", MIDNIGHT_PAST)
    assert purchases_stale(joined)
    spec = CampaignSpec.from_mapping(
        {
            "members": str(members),
            "orders": str(orders),
            "filter": {"顧客グループ": ["休眠"]},
            "subject": "件名",
            "body": "本文",
        }
    )
    plan = plan_campaign(spec, settings, members=joined)
    assert list(plan.audience.sendable["id"]) == [1003]
    again = members_with_orders(joined, orders, settings)  # its own columns replaced
    assert again.attrs["purchases_as_of"] == "2026-12-02" and not purchases_stale(again)
    assert list(again.columns) == list(joined.columns)
