"""Issue 14 (5, 6, 11) in the wizard, driven from Python like a user: the over-quota warning
where the list is chosen and in compose, the merge-field list, whole button labels and the
multi-select hint, the member-file chooser (picker and upload), and saved filters."""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Callable
from pathlib import Path

import ipywidgets as widgets
import pytest
from smtp_servers import TestServer

from bcartnb.segments import SegmentStore
from bcartnb.settings import Settings
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


def settings_for(tmp_path: Path, repo_root: Path, server: TestServer, plan: str) -> Settings:
    return Settings(
        plan=plan,
        from_addr="shop@example.co.jp",
        admin="admin@example.co.jp",
        signature="見本商事",
        db=tmp_path / "ledger.sqlite3",
        templates=repo_root / "data" / "templates",
        segments=tmp_path / "segments.toml",
        smtp=server.settings(),
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
    wizard._refresh_segments()
    wizard.filter_step.segment.value = "卸売"
    wizard.filter_step.apply.click()
    assert len(wizard.table.result_ids) == 80
    SegmentStore(tmp_path / "segments.toml").save("東京", {"都道府県": "東京都"})
    wizard._refresh_segments()
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
