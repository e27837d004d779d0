"""Issues 14 (5, 6, 11) and 20 in the wizard, driven from Python like a user: the over-quota
warning where the list is chosen and in compose, the merge-field list, whole button labels and
the multi-select hint, the member-file chooser (picker and upload), saved filters; the same mail
never twice (``already_sent`` in every step, 「同じ内容を再送する」) and finishing a campaign
from the 再開 screen (give up, uncertain mails, missing members, 配信を取り消す), each against a
real SMTP server with injected faults and a real ledger."""

from __future__ import annotations

import datetime as dt
import html
import os
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import ipywidgets as widgets
import pytest
from smtp_servers import Faults, TestServer

from bcartnb.ledger import Ledger
from bcartnb.segments import SegmentStore
from bcartnb.settings import DeliverySettings, Settings, TrackingSettings
from bcartnb.widgets import Wizard
from bcartnb.widgets.filter_step import MULTI_HINT, NO_SEGMENT
from bcartnb.widgets.member_source import NO_FILE, find_member_files, store_upload

Server = Callable[..., TestServer]
HEADER = "会員ID,会社名,担当者(姓),担当者(名),メールアドレス,都道府県,メール案内,業種\n"


def rows(n: int, *, start: int = 1001, pref: str = "東京都", kind: str = "卸売") -> str:
    return "".join(
        f"{m},テスト商事{m},山田,太郎,u{m}@example.co.jp,{pref},受け取る,{kind}\n"
        for m in range(start, start + n)
    )


def settings_for(
    tmp_path: Path,
    repo_root: Path,
    server: TestServer,
    plan: str,
    delivery: DeliverySettings | None = None,
) -> Settings:
    return Settings(
        plan=plan,
        from_addr="shop@example.co.jp",
        admin="admin@example.co.jp",
        signature="見本商事",
        db=tmp_path / "ledger.sqlite3",
        templates=repo_root / "data" / "templates",
        segments=tmp_path / "segments.toml",
        smtp=server.settings(),
        delivery=delivery or DeliverySettings(),
    )


@pytest.fixture
def big(tmp_path: Path) -> Path:
    """120 members: more than ライトプラン's 100 a month."""
    path = tmp_path / "members.csv"
    path.write_text(HEADER + rows(80) + rows(40, start=2001, pref="大阪府", kind="小売"), "utf-8")
    return path


@pytest.fixture
def wizard(big: Path, tmp_path: Path, repo_root: Path, smtp_server: Server) -> Wizard:
    settings = settings_for(tmp_path, repo_root, smtp_server(), "ライトプラン")
    return Wizard(big, settings, member_folders=[tmp_path], upload_dir=tmp_path / "uploads")


# --- 5: the quota, said as soon as it does not fit -----------------------------------------------


def test_over_quota_warning_at_the_selection_then_gone_when_narrowed(wizard: Wizard) -> None:
    warning = wizard.select_warning.value
    assert "検索結果すべての送信件数 120件は、今月の残り 100件を 20件超えています" in warning
    assert "メール配信上限数 100件／月、ライトプラン" in warning
    wizard.filter_step.pref.value = ("東京都",)
    wizard.filter_step.apply.click()
    assert wizard.select_warning.value == ""  # 80 fit


def test_the_warning_leaves_the_status_line_alone(wizard: Wizard) -> None:
    wizard.filter_step.pref.value = ("大阪府",)
    wizard.filter_step.apply.click()
    assert "検索結果: 40件" in wizard.status.value
    wizard.table.check([2001])
    assert "検索結果: 40件" in wizard.status.value


def test_ticked_members_are_counted_separately(wizard: Wizard) -> None:
    wizard.table.check([1001, 1002, 1003])
    warning = wizard.select_warning.value
    assert "検索結果すべての送信件数 120件" in warning
    assert "チェックした会員の送信件数" not in warning  # 3 fit
    wizard.table.check(wizard.table.result_ids[:101])
    assert "チェックした会員の送信件数 101件は、今月の残り 100件を 1件超えています" in (
        wizard.select_warning.value
    )


def test_over_quota_warning_in_compose_before_confirm(wizard: Wizard) -> None:
    wizard.send_all.click()
    assert wizard.stage == "compose"
    assert "送信件数 120件は、今月の残り 100件を 20件超えています" in (
        wizard.compose.quota_warning.value
    )
    wizard.compose.opt_in.value = False  # same count here (everyone opted in): still over
    assert "20件超えています" in wizard.compose.quota_warning.value
    wizard.compose.back.click()
    wizard.filter_step.pref.value = ("大阪府",)
    wizard.filter_step.apply.click()
    wizard.send_all.click()
    assert wizard.compose.quota_warning.value == ""


def test_member_values_in_the_warning_cannot_inject(wizard: Wizard) -> None:
    """The warning holds numbers and the plan's name only, escaped: nothing from a member."""
    assert "<script" not in wizard.select_warning.value


# --- 5: the merge fields -------------------------------------------------------------------------


def test_merge_field_list_inserts_into_subject_and_body(wizard: Wizard) -> None:
    wizard.table.check([1001])
    wizard.send_checked.click()
    options = dict((v, k) for k, v in wizard.compose.field.options)
    assert {"会社名", "担当者名", "comp_name", "業種", "署名"} <= set(options)
    assert options["会社名"].startswith("{{ 会社名 }}")
    wizard.compose.field.value = "会社名"
    wizard.compose.insert_subject.click()
    wizard.compose.field.value = "業種"  # a custom column
    wizard.compose.insert_body.click()
    assert wizard.compose.subject.value == "{{ 会社名 }}"
    assert wizard.compose.body.value == "{{ 業種 }}"
    wizard.compose.subject.value += " 様へのご案内"
    wizard.compose.body.value += " のお客様へ\n本文"
    wizard.compose.to_confirm.click()
    assert wizard.stage == "confirm", wizard.status.value
    assert "テスト商事1001 様へのご案内" in wizard.confirm.preview.value
    assert "卸売 のお客様へ" in wizard.confirm.preview.value


def test_a_typo_is_named_with_the_near_fields(wizard: Wizard) -> None:
    wizard.table.check([1001])
    wizard.send_checked.click()
    wizard.compose.subject.value = "{{ 業 }} のご案内"
    wizard.compose.body.value = "本文"
    wizard.compose.to_confirm.click()
    assert wizard.stage == "compose"
    assert "入力した件名 1行目: 「業」という差し込み項目はありません。近い項目: 業種" in (
        wizard.status.value
    )


# --- 6: whole labels, the hint -------------------------------------------------------------------


def test_buttons_size_to_their_whole_label_in_wrapping_rows(wizard: Wizard) -> None:
    long = [
        wizard.send_all,
        wizard.send_checked,
        wizard.table.check_page,
        wizard.filter_step.save_segment,
        wizard.compose.to_confirm,
        wizard.compose.insert_body,
    ]
    for b in long:
        assert (b.layout.width, b.layout.min_width, b.layout.flex) == (
            "auto",
            "max-content",
            "0 0 auto",
        ), b.description
    rows_ = [w for w in _walk(wizard.widget) if isinstance(w, widgets.HBox)]
    assert rows_ and all(r.layout.flex_flow == "row wrap" for r in rows_)


def _walk(w: widgets.Widget):  # type: ignore[no-untyped-def]
    yield w
    for child in getattr(w, "children", ()):
        yield from _walk(child)


def test_multi_select_has_the_ctrl_click_hint(wizard: Wizard) -> None:
    assert "Ctrl" in MULTI_HINT and "Shift" in MULTI_HINT
    assert MULTI_HINT in wizard.filter_step.hint.value


# --- 6: choosing the member file -----------------------------------------------------------------


def test_picker_lists_csvs_and_loading_one_starts_over(wizard: Wizard, tmp_path: Path) -> None:
    other = tmp_path / "data" / "2026-11.csv"
    other.parent.mkdir()
    other.write_bytes((HEADER + rows(3, start=5001, pref="北海道")).encode("cp932"))
    (tmp_path / "notes.txt").write_text("not a member file", "utf-8")
    wizard.source.refresh()
    listed = list(wizard.source.picker.options)
    assert listed[0] == NO_FILE and str(other.resolve()) in listed
    assert not any(o.endswith("notes.txt") for o in listed)
    wizard.table.check([1001])
    wizard.source.picker.value = str(other.resolve())
    wizard.source.load.click()
    assert wizard.table.result_ids == [5001, 5002, 5003]
    assert wizard.table.checked == ()
    assert list(wizard.filter_step.pref.options) == [("北海道", "北海道")]
    assert "2026-11.csv（3件）" in wizard.source.current.value
    assert wizard.select_warning.value == ""
    wizard.send_all.click()
    wizard.compose.subject.value = "{{ 会社名 }} 様"
    wizard.compose.body.value = "本文"
    wizard.compose.to_confirm.click()
    assert wizard.spec is not None and wizard.spec.members == other.resolve()


def test_loading_nothing_or_a_broken_file_keeps_the_list(wizard: Wizard, tmp_path: Path) -> None:
    wizard.source.load.click()
    assert "会員ファイルを一覧から選んでください" in wizard.status.value
    bad = tmp_path / "bad.csv"
    bad.write_text("会員ID,メールアドレス,メール案内\n1,a@example.co.jp,たぶん\n", "utf-8")
    wizard.source.refresh()
    wizard.source.picker.value = str(bad.resolve())
    wizard.source.load.click()
    assert "会員ファイルのエラー" in wizard.status.value and "たぶん" in wizard.status.value
    assert len(wizard.table.result_ids) == 120  # the old list stays


def _upload(wizard: Wizard, name: str, content: bytes) -> None:
    wizard.source.upload.value = (
        {
            "name": name,
            "type": "text/csv",
            "size": len(content),
            "content": memoryview(content),
            "last_modified": dt.datetime(2026, 11, 29, tzinfo=dt.UTC),
        },
    )


def test_upload_cp932_is_stored_under_a_safe_name_and_loaded(
    wizard: Wizard, tmp_path: Path
) -> None:
    content = (HEADER + rows(2, start=7001, pref="沖縄県")).encode("cp932")
    _upload(wizard, "../../会員一覧.csv", content)
    assert wizard.table.result_ids == [7001, 7002], wizard.status.value
    stored = Path(wizard.members.attrs["source"])
    assert stored.parent == (tmp_path / "uploads").resolve()
    assert stored.name.startswith("members-") and ".." not in stored.name
    assert stored.read_bytes() == content  # kept as it came; read_members decoded CP932
    assert wizard.members.attrs["encoding"].lower().replace("_", "") in {"cp932", "shiftjis"}
    assert str(stored) in wizard.source.picker.options
    # the same file again is the same stored file
    assert store_upload(content, "x.csv", tmp_path / "uploads") == stored


@pytest.mark.parametrize(
    ("name", "content", "ja"),
    [
        ("members.xlsx", b"PK\x03\x04", "会員CSV（.csv）か bcart pull のスナップショット"),
        ("members.csv", b"", "空"),
        ("members.csv", b"\x00\x01binary", "会員ファイルのエラー"),
    ],
)
def test_bad_uploads_are_one_japanese_line(
    wizard: Wizard, tmp_path: Path, name: str, content: bytes, ja: str
) -> None:
    _upload(wizard, name, content)
    assert ja in wizard.status.value and wizard.status.kind == "error"
    assert "Traceback" not in wizard.status.value
    assert len(wizard.table.result_ids) == 120


def test_find_member_files_is_shallow_and_skips_hidden(tmp_path: Path) -> None:
    (tmp_path / "a.csv").write_text("x", "utf-8")
    (tmp_path / ".hidden.csv").write_text("x", "utf-8")
    deep = tmp_path / "x" / "y"
    deep.mkdir(parents=True)
    (deep / "deep.csv").write_text("x", "utf-8")
    (tmp_path / "x" / "b.CSV").write_text("x", "utf-8")
    (tmp_path / "bcart_members.parquet").write_bytes(b"PAR1")  # a B-Cart API snapshot
    (tmp_path / "notes.txt").write_text("x", "utf-8")
    names = sorted(p.name for p in find_member_files([tmp_path, tmp_path / "missing"]))
    assert names == ["a.csv", "b.CSV", "bcart_members.parquet"]


def test_a_wizard_without_members_starts_with_the_chooser(
    tmp_path: Path, repo_root: Path, smtp_server: Server, big: Path
) -> None:
    settings = settings_for(tmp_path, repo_root, smtp_server(), "プラン10")
    w = Wizard(None, settings, member_folders=[tmp_path], upload_dir=tmp_path / "up")
    assert w.table.result_ids == [] and w.status.kind != "error"
    w.send_all.click()
    assert "検索結果がありません" in w.status.value
    w.source.picker.value = str(big.resolve())
    w.source.load.click()
    assert len(w.table.result_ids) == 120


# --- 11: saved filters (セグメント) ---------------------------------------------------------------


def test_save_a_segment_then_pick_it_in_a_new_wizard(
    wizard: Wizard, tmp_path: Path, big: Path
) -> None:
    wizard.filter_step.pref.value = ("大阪府",)
    wizard.filter_step.segment_name.value = "大阪の小売"
    wizard.filter_step.save_segment.click()
    assert "セグメント「大阪の小売」を保存しました" in wizard.status.value
    assert SegmentStore(tmp_path / "segments.toml").get("大阪の小売") == {"pref": ["大阪府"]}
    assert "大阪の小売" in wizard.filter_step.segment.options

    again = Wizard(big, wizard.settings, member_folders=[tmp_path])
    again.filter_step.segment.value = "大阪の小売"
    assert "大阪府" in again.filter_step.segment_words.value
    again.filter_step.apply.click()
    assert len(again.table.result_ids) == 40
    assert again.filter == {"pref": ["大阪府"]}
    again.send_all.click()
    again.compose.subject.value = "s"
    again.compose.body.value = "b"
    again.compose.to_confirm.click()
    assert again.spec is not None and again.spec.filter == {"pref": ["大阪府"]}


def test_segment_is_anded_with_the_controls_and_a_column_in_both_is_refused(
    wizard: Wizard, tmp_path: Path
) -> None:
    SegmentStore(tmp_path / "segments.toml").save("卸売", {"業種": "卸売"})
    wizard.segment_tools.refresh()
    wizard.filter_step.segment.value = "卸売"
    wizard.filter_step.apply.click()
    assert len(wizard.table.result_ids) == 80
    SegmentStore(tmp_path / "segments.toml").save("東京", {"都道府県": "東京都"})
    wizard.segment_tools.refresh()
    wizard.filter_step.segment.value = "東京"
    wizard.filter_step.pref.value = ("大阪府",)
    wizard.filter_step.apply.click()
    assert "「pref」はセグメント「東京」にもあります" in wizard.status.value
    assert len(wizard.table.result_ids) == 80  # the last good result stays


@pytest.mark.parametrize(
    ("name", "ja"),
    [("", "空"), ("東京\n卸売", "改行"), ("x" * 61, "長すぎ"), (" 東京", "空白")],
)
def test_bad_segment_names_are_said_in_japanese(wizard: Wizard, name: str, ja: str) -> None:
    wizard.filter_step.pref.value = ("東京都",)
    wizard.filter_step.segment_name.value = name
    wizard.filter_step.save_segment.click()
    assert wizard.status.kind == "error" and ja in wizard.status.value
    assert list(wizard.filter_step.segment.options) == [NO_SEGMENT]


def test_segment_save_refuses_empty_filter_keyword_and_existing_name(wizard: Wizard) -> None:
    wizard.filter_step.segment_name.value = "全員"
    wizard.filter_step.save_segment.click()
    assert "絞込条件が空" in wizard.status.value
    wizard.filter_step.text.value = "商事"
    wizard.filter_step.pref.value = ("東京都",)
    wizard.filter_step.save_segment.click()
    assert "キーワードはセグメントに保存できません" in wizard.status.value
    wizard.filter_step.text.value = ""
    wizard.filter_step.save_segment.click()
    assert "保存しました" in wizard.status.value
    wizard.filter_step.segment_name.value = "全員"
    wizard.filter_step.pref.value = ("大阪府",)
    wizard.filter_step.save_segment.click()
    assert "すでにあります" in wizard.status.value
    wizard.filter_step.segment_overwrite.value = True
    wizard.filter_step.save_segment.click()
    assert "保存しました" in wizard.status.value
    assert wizard.segments.get("全員") == {"pref": ["大阪府"]}


def test_a_broken_segments_file_does_not_stop_the_wizard(
    big: Path, tmp_path: Path, repo_root: Path, smtp_server: Server
) -> None:
    (tmp_path / "segments.toml").write_text("[壊れた\n", "utf-8")
    w = Wizard(big, settings_for(tmp_path, repo_root, smtp_server(), "プラン10"))
    assert len(w.table.result_ids) == 120
    assert list(w.filter_step.segment.options) == [NO_SEGMENT]
    assert os.path.exists(tmp_path / "segments.toml")


# --- 20: the same mail never twice ---------------------------------------------------------------

ADMIN = "admin@example.co.jp"
#: one try a run, one connection: a deferred mail stays deferred, transactions come in order
ONE_TRY = DeliverySettings(retries=0, connections=1)


def member_mails(server: TestServer) -> Counter[str]:
    return Counter(r.recipients[0] for r in server.received if r.recipients != (ADMIN,))


def small(tmp_path: Path, n: int = 6, name: str = "members.csv") -> Path:
    path = tmp_path / name
    path.write_text(HEADER + rows(n), "utf-8")
    return path


def write_and_confirm(
    w: Wizard, ids: list[int] | None = None, body: str = "年末のご案内です。"
) -> None:
    """Tick ``ids`` (None: every search result), write the mail, 確認画面へ."""
    if ids:
        w.table.check(ids)
        w.send_checked.click()
    else:
        w.send_all.click()
    assert w.stage == "compose", w.status.value
    w.compose.subject.value = "{{ 会社名 }} 様 年末のご案内"
    w.compose.body.value = body
    w.compose.to_confirm.click()
    assert w.stage == "confirm", w.status.value


def reason(w: Wizard, member_id: int) -> str:
    return str(w.table.rows.set_index("id").loc[member_id, "送信できない理由"])


def states(settings: Settings, cid: str) -> dict[int, str]:
    with Ledger.open(settings.db) as led:
        rows_ = led.deliveries(cid)
    return dict(zip(rows_["member_id"].astype(int), rows_["state"].astype(str), strict=True))


def shown(w: widgets.Widget) -> bool:
    return w.layout.display != "none"


def test_a_renamed_file_holds_back_who_has_the_mail_in_every_step(
    tmp_path: Path, repo_root: Path, smtp_server: Server
) -> None:
    server = smtp_server()
    settings = settings_for(tmp_path, repo_root, server, "プラン10")
    path = small(tmp_path)
    first = Wizard(path, settings, member_folders=[tmp_path])
    write_and_confirm(first, [1001, 1002, 1003])
    first.confirm.send.click()
    assert first.result is not None and first.result.sent == 3, first.status.value
    cid = first.result.campaign_id

    renamed = tmp_path / "members-2026-12.csv"  # B-Cart's export, downloaded anew
    path.rename(renamed)
    w = Wizard(renamed, settings, member_folders=[tmp_path])
    assert [reason(w, m) for m in range(1001, 1007)] == [""] * 6  # no mail written yet
    w.table.check([1005])
    write_and_confirm(w)  # every search result
    counts = w.confirm.counts.value
    assert "送信件数</b>: 3件" in counts and "既に同じメールを送信済み 3件" in counts
    assert f"3 件は、同じメールをキャンペーン {cid} で送信済み" in w.confirm.warnings.value
    kids = list(w.confirm.children)  # the lines sit under the counts, read before 送信
    assert kids.index(w.confirm.warnings) == kids.index(w.confirm.counts) + 1
    assert [v for _, v in w.confirm.preview_member.options] == [1004, 1005, 1006]

    w.confirm.back.click()
    assert "送信件数</b>: 3件" in w.compose.counts.value
    assert "既に同じメールを送信済み 3件" in w.compose.counts.value
    w.compose.back.click()
    assert w.stage == "select" and w.table.checked == (1005,)  # the ticks stay
    named = f"既に同じメールを送信済み（{cid}）"
    assert [reason(w, m) for m in range(1001, 1007)] == [named] * 3 + [""] * 3
    cells = [c for r in w.table.shown_cells() for c in r]
    assert cells.count(html.escape(named)) == 3  # on the screen, not only in the frame

    w.send_all.click()
    w.compose.to_confirm.click()
    w.confirm.send.click()
    assert w.result is not None and w.result.sent == 3, w.status.value
    assert server.wait_for(8)  # 3 + 3 members, an administrator's copy each
    assert member_mails(server) == Counter(f"u{m}@example.co.jp" for m in range(1001, 1007))


def test_the_selection_warning_counts_without_who_has_the_mail(wizard: Wizard) -> None:
    write_and_confirm(wizard, list(range(1001, 1031)))
    wizard.confirm.send.click()
    assert wizard.result is not None and wizard.result.sent == 30, wizard.status.value
    wizard.sending.again.click()  # the form keeps the mail: 30 of the 120 have it
    assert "検索結果すべての送信件数 90件は、今月の残り 70件を 20件超えています" in (
        wizard.select_warning.value
    )
    assert reason(wizard, 1001).startswith("既に同じメールを送信済み（")
    # the 30 who have it and 71 who do not
    wizard.table.check([*range(1001, 1081), *range(2001, 2022)])
    assert "チェックした会員の送信件数 71件は、今月の残り 70件を 1件超えています" in (
        wizard.select_warning.value
    )


def test_resend_box_shows_the_count_replans_and_sends_again_only_when_ticked(
    tmp_path: Path, repo_root: Path, smtp_server: Server
) -> None:
    server = smtp_server()
    w = Wizard(small(tmp_path), settings_for(tmp_path, repo_root, server, "プラン10"))
    box = w.confirm.repeat
    write_and_confirm(w, [1001, 1002])
    assert not shown(box) and box.value is False  # nobody has this mail yet
    w.confirm.send.click()
    assert w.result is not None and w.result.sent == 2

    w.sending.again.click()
    write_and_confirm(w, [1001, 1002, 1003])
    assert shown(box) and box.value is False
    assert box.description == "同じ内容を再送する（送信済みの 2 件にも、もう一度送ります）"
    counts = w.confirm.counts
    assert "送信件数</b>: 1件" in counts.value and "2件 → 3件" in counts.value
    w.confirm.back.click()
    w.compose.to_confirm.click()
    assert box.value is False and w.plan is not None and not w.plan.repeat  # unticked stays

    box.value = True  # ticked: planned again with the two who have it
    assert w.plan is not None and w.plan.repeat
    assert "送信件数</b>: 3件" in counts.value and "2件 → 5件" in counts.value
    assert "既に同じメールを送信済み" not in counts.value
    assert [v for _, v in w.confirm.preview_member.options] == [1001, 1002, 1003]
    box.value = False
    assert not w.plan.repeat and "送信件数</b>: 1件" in counts.value

    box.value = True
    w.confirm.back.click()  # the form counts as 送信 will
    assert "送信件数</b>: 3件" in w.compose.counts.value
    w.compose.body.value += "（改訂版）"  # another mail: nobody has it, the tick is spent
    w.compose.to_confirm.click()
    assert not shown(box) and box.value is False and not w.plan.repeat
    w.confirm.back.click()
    w.compose.body.value = "年末のご案内です。"  # the first mail again: unticked
    w.compose.to_confirm.click()
    assert shown(box) and box.value is False and "送信件数</b>: 1件" in counts.value
    box.value = True
    w.confirm.back.click()
    w.compose.to_confirm.click()
    assert box.value is True and w.plan.repeat  # kept: the marketer ticked it for this mail
    assert len(server.received) == 3  # nothing went out while choosing

    w.confirm.send.click()
    assert w.result is not None and w.result.sent == 3, w.status.value
    assert server.wait_for(7)
    mails = member_mails(server)
    assert mails == Counter(
        {"u1001@example.co.jp": 2, "u1002@example.co.jp": 2, "u1003@example.co.jp": 1}
    )

    w.sending.again.click()  # a new campaign starts unticked: the same mail sends nothing
    write_and_confirm(w, [1001, 1002, 1003])
    assert box.value is False and box.description.startswith("同じ内容を再送する（送信済みの 3 件")
    assert w.confirm.send.disabled and "同じメールを受け取り済み" in w.status.value
    assert "「同じ内容を再送する」にチェック" in w.status.value
    w.confirm.send.click()
    assert len(server.received) == 7


# --- 20: finishing a campaign from the 再開 screen -----------------------------------------------


def sent_unfinished(
    tmp_path: Path, repo_root: Path, server: TestServer, ids: list[int] | None = None
) -> Wizard:
    """A wizard whose send of 1001-1003 (or ``ids``; [] every member) ended unfinished, on
    the 再開 screen."""
    settings = settings_for(tmp_path, repo_root, server, "プラン10", ONE_TRY)
    w = Wizard(small(tmp_path, 5), settings, member_folders=[tmp_path])
    write_and_confirm(w, [1001, 1002, 1003] if ids is None else ids)
    w.confirm.send.click()
    assert w.stage == "done" and w.result is not None and w.result.exit_code == 4, w.status.value
    assert shown(w.sending.resume) and shown(w.sending.choices.cancel)
    return w


def test_cancel_asks_once_more_then_ends_the_campaign(
    tmp_path: Path, repo_root: Path, smtp_server: Server
) -> None:
    server = smtp_server()
    server.down()
    w = sent_unfinished(tmp_path, repo_root, server)
    assert w.result is not None
    cid, choices = w.result.campaign_id, w.sending.choices
    assert not shown(choices.uncertain_box) and not shown(choices.skip_missing)
    assert shown(choices.give_up) == bool(w.result.deferred)
    assert not shown(choices.cancel_confirm)
    choices.cancel_confirm.click()  # not offered yet: a stray click ends nothing
    choices.cancel.click()
    assert shown(choices.cancel_confirm) and shown(choices.cancel_note)
    with Ledger.open(w.settings.db) as led:
        assert led.campaign(cid).status == "unfinished"  # asked, not done

    choices.cancel_confirm.click()
    result = w.result
    assert result is not None and (result.status, result.cancelled, result.sent) == (
        "cancelled",
        3,
        0,
    )
    assert "配信を取り消しました" in w.sending.done.value and "取り消し 3" in w.sending.done.value
    assert "配信を取り消しました" in w.status.value and w.status.kind == "info"
    assert not any(shown(x) for x in (w.sending.resume, choices, choices.cancel))
    assert not shown(choices.cancel_confirm) and shown(w.sending.again)
    assert w.sending.progress.description == "取り消し"
    assert states(w.settings, cid) == {1001: "cancelled", 1002: "cancelled", 1003: "cancelled"}
    with Ledger.open(w.settings.db) as led:
        assert led.campaign(cid).status == "cancelled"
    cancelled = w.result
    choices.cancel_confirm.click()  # a second click, and 再開: the campaign is over
    w.sending.resume.click()
    assert w.result is cancelled and w.status.kind == "info"

    server.up()  # none of its mails went out: the same mail still reaches them, once
    w.sending.again.click()
    write_and_confirm(w, [1001, 1002, 1003])
    assert not shown(w.confirm.repeat)
    w.confirm.send.click()
    assert w.result is not None and w.result.sent == 3, w.status.value
    assert server.wait_for(4)
    assert member_mails(server) == Counter(f"u{m}@example.co.jp" for m in (1001, 1002, 1003))


def test_give_up_deferred_only_when_ticked(
    tmp_path: Path, repo_root: Path, smtp_server: Server
) -> None:
    server = smtp_server(faults=Faults(defer={"u1002@example.co.jp": 1000}))
    w = sent_unfinished(tmp_path, repo_root, server)
    assert w.result is not None and (w.result.sent, w.result.deferred) == (2, 1)
    cid, choices = w.result.campaign_id, w.sending.choices
    assert shown(choices.give_up) and choices.give_up.value is False
    assert not shown(choices.uncertain_box) and not shown(choices.skip_missing)
    assert choices.give_up.description == "再試行待ちのメールをあきらめる（失敗にする）"

    w.sending.resume.click()  # 再開 alone: deferred again, nothing given up
    assert w.result is not None and (w.result.exit_code, w.result.deferred) == (4, 1)
    assert shown(choices.give_up) and choices.give_up.value is False

    frozen: list[bool] = []
    choices.give_up.observe(lambda c: frozen.append(c["new"]), names="disabled")
    choices.give_up.value = True
    w.sending.resume.click()
    assert frozen == [True, False]  # frozen while it ran, back after
    result = w.result
    assert result is not None and (result.status, result.exit_code) == ("done", 5)
    assert (result.sent, result.failed) == (2, 1)
    assert result.ended == {"gave_up": [(1002, "u1002@example.co.jp")]}
    assert "再送をあきらめて失敗にしたメール 1 件: 1002 u***@example.co.jp" in (
        w.sending.done.value
    )
    assert not shown(w.sending.resume) and not shown(choices)
    assert states(w.settings, cid) == {1001: "sent", 1002: "failed", 1003: "sent"}
    assert member_mails(server) == Counter(f"u{m}@example.co.jp" for m in (1001, 1003))
    w.sending.resume.click()  # finished: a second 再開 does nothing
    assert w.result is result


@pytest.mark.parametrize(
    ("choice", "state", "resent", "words"),
    [
        ("keep", "uncertain", 0, "結果不明"),
        ("resend_uncertain", "sent", 1, "メール送信を完了いたしました"),
        ("mark_uncertain_sent", "sent", 0, "届いたと確認して送信済みにしたメール 1 件: 1002"),
        ("drop_uncertain", "cancelled", 0, "再送しないことにしたメール 1 件: 1002"),
    ],
)
def test_uncertain_mails_as_the_marketer_chooses(
    tmp_path: Path,
    repo_root: Path,
    smtp_server: Server,
    choice: str,
    state: str,
    resent: int,
    words: str,
) -> None:
    server = smtp_server(faults=Faults(drop_at={2}, drop_stage="DATA"))
    w = sent_unfinished(tmp_path, repo_root, server)
    assert w.result is not None and [m for m, _ in w.result.uncertain] == [1002]
    cid, choices = w.result.campaign_id, w.sending.choices
    assert shown(choices.uncertain_box) and choices.uncertain.value == "keep"
    assert "送信結果が不明なメール 1 件" in choices.uncertain_words.value
    assert [label for label, _ in choices.uncertain.options][1:] == [
        "再送する",
        "届いたことを確認したので送信済みにする",
        "再送しない",
    ]
    assert not shown(choices.give_up) and not shown(choices.skip_missing)
    before = member_mails(server)

    choices.uncertain.value = choice
    w.sending.resume.click()
    result = w.result
    assert result is not None and words in w.sending.done.value, w.sending.done.value
    assert states(w.settings, cid)[1002] == state
    # the first run stopped at the loss (one connection), so 1003 was still pending: sent now
    assert member_mails(server) - before == Counter(
        {"u1002@example.co.jp": resent, "u1003@example.co.jp": 1}
    )
    if choice == "keep":  # left as it is: still unfinished, still offered
        assert result.exit_code == 4 and len(result.uncertain) == 1
        assert shown(choices.uncertain_box) and choices.uncertain.value == "keep"
    else:
        assert (result.status, result.exit_code, result.uncertain) == ("done", 0, [])
        assert not shown(choices)


def test_members_gone_from_the_file_can_be_skipped(
    tmp_path: Path, repo_root: Path, smtp_server: Server
) -> None:
    server = smtp_server()
    server.down()
    w = sent_unfinished(tmp_path, repo_root, server, [])  # 検索結果すべて: 1001-1005
    assert w.result is not None
    cid, choices = w.result.campaign_id, w.sending.choices
    assert not shown(choices.skip_missing)  # nobody missing yet
    server.up()
    path = Path(w.members.attrs["source"])
    path.write_text(HEADER + rows(1) + rows(3, start=1003), "utf-8")  # 1002 deleted since

    w.sending.resume.click()
    assert w.result is not None and (w.result.exit_code, w.result.pending) == (4, 1)
    assert any("1002" in x for x in w.result.warnings)
    assert shown(choices.skip_missing) and choices.skip_missing.value is False
    assert choices.skip_missing.description == "会員ファイルにいない会員には送らない"
    choices.skip_missing.value = True
    w.sending.resume.click()
    result = w.result
    assert result is not None and (result.status, result.exit_code) == ("done", 0)
    assert "会員ファイルにいないため送らないことにしたメール 1 件: 1002" in w.sending.done.value
    assert states(w.settings, cid) == {
        1001: "sent",
        1002: "cancelled",
        1003: "sent",
        1004: "sent",
        1005: "sent",
    }
    assert member_mails(server) == Counter(f"u{m}@example.co.jp" for m in (1001, 1003, 1004, 1005))


def test_a_refused_resume_leaves_the_resume_screen(
    tmp_path: Path, repo_root: Path, smtp_server: Server
) -> None:
    server = smtp_server()
    server.down()
    w = sent_unfinished(tmp_path, repo_root, server)
    before = w.result
    assert before is not None
    path = Path(w.members.attrs["source"])
    path.write_text("会員ID,メールアドレス,メール案内\n1,a@example.co.jp,たぶん\n", "utf-8")
    w.sending.resume.click()  # the member file cannot be read: nothing is sent or changed
    assert w.status.kind == "error" and "会員ファイルのエラー" in w.status.value
    assert w.stage == "done" and w.result is before
    assert shown(w.sending.resume) and shown(w.sending.choices.cancel)
    assert set(states(w.settings, before.campaign_id).values()) <= {"pending", "deferred"}
    w.sending.choices.cancel.click()  # still finishable from here
    w.sending.choices.cancel_confirm.click()
    assert w.result is not None and w.result.status == "cancelled"


def test_the_finishing_controls_freeze_with_the_others(
    tmp_path: Path, repo_root: Path, smtp_server: Server
) -> None:
    server = smtp_server()
    w = Wizard(small(tmp_path), settings_for(tmp_path, repo_root, server, "プラン10"))
    c = w.sending.choices
    wanted = {w.sending.resume, c.give_up, c.uncertain, c.skip_missing, c.cancel, c.cancel_confirm}
    assert wanted <= set(w.controls) and w.confirm.repeat in w.controls


# --- the done screen says where the results will be -----------------------------------------

TRACKING = TrackingSettings(url="https://t.shop.example.co.jp/t/")
HTML_WITH_LINK = '<p>{{ 会社名 }} 様</p><p><a href="https://shop.example.co.jp/sale">セール</a></p>'
TEXT_WITH_LINK = "{{ 会社名 }} 様\nセールはこちら https://shop.example.co.jp/sale\n"
HTML_NO_LINK = "<p>{{ 会社名 }} 様</p>"


@pytest.mark.parametrize(
    ("tracking", "html_mail", "body", "words"),
    [
        (True, True, HTML_WITH_LINK, "開封・クリックの結果: 最初の画面の「配信履歴と結果」か、"),
        (True, False, TEXT_WITH_LINK, "クリックの結果: 最初の画面の「配信履歴と結果」か、"),
        (True, True, HTML_NO_LINK, "開封の結果: 最初の画面の「配信履歴と結果」か、"),
        (False, True, HTML_WITH_LINK, "開封・クリック: このキャンペーンは計測していません"),
    ],
)
def test_the_done_screen_says_where_opens_and_clicks_will_be(
    tmp_path: Path,
    repo_root: Path,
    smtp_server: Server,
    tracking: bool,
    html_mail: bool,
    body: str,
    words: str,
) -> None:
    settings = settings_for(tmp_path, repo_root, smtp_server(), "プラン10")
    if tracking:
        secret = "done-screen-secret-0123456789abcdef"
        settings = settings.replace(tracking=TRACKING, unsubscribe_secret=secret)
    w = Wizard(small(tmp_path, 3), settings, member_folders=[tmp_path])
    w.compose.html.value = html_mail
    write_and_confirm(w, [1001, 1002], body=body)
    w.confirm.send.click()
    assert w.stage == "done" and w.result is not None, w.status.value
    assert (w.result.status, w.result.sent) == ("done", 2)
    done = html.unescape(w.sending.done.value)
    assert words in done, done
    cid = w.result.campaign_id
    if tracking:
        assert f"コマンド bcartnb results {cid} で見られます" in done
        assert ("テキストメールのため開封は計測できません" in done) == (not html_mail)
        assert ("計測するリンクがない" in done) == (body == HTML_NO_LINK)
    else:
        assert "bcartnb results" not in done and "配信履歴と結果" not in done
    # the line sits with the others of the done screen, after the admin copy's
    assert done.index("配信控え") < done.index(words)
    # and the panel it names shows the campaign on the first screen, where 新しい配信 goes
    w.sending.again.click()
    assert w.stage == "select" and cid in w.results.table.value
