"""Saved filters (セグメント): the file, hostile names and values, two savers at once, and the
segment in a campaign file, the command line and papermill's CampaignSpec."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bcartnb import campaign
from bcartnb.campaign import CampaignSpec
from bcartnb.exceptions import SettingsError
from bcartnb.segments import SegmentStore, check_segment_name, combine_filters
from bcartnb.settings import load_settings

MEMBERS = (
    "会員ID,会社名,担当者(姓),担当者(名),メールアドレス,都道府県,メール案内,業種\n"
    "1001,東京卸商事,山田,太郎,a1001@example.co.jp,東京都,受け取る,卸売\n"
    "1002,東京小売商事,山田,花子,a1002@example.co.jp,東京都,受け取る,小売\n"
    "1003,大阪卸商事,佐藤,一郎,a1003@example.co.jp,大阪府,受け取る,卸売\n"
    "1004,東京卸二号,鈴木,次郎,a1004@example.co.jp,東京都,受け取らない,卸売\n"
)


def shop(tmp_path: Path) -> Path:
    (tmp_path / "members.csv").write_text(MEMBERS, encoding="utf-8")
    (tmp_path / "bcartnb.toml").write_text(
        'plan = "プラン10"\nfrom = "見本商事 <shop@example.co.jp>"\ndb = "ledger.sqlite3"\n',
        encoding="utf-8",
    )
    return tmp_path / "bcartnb.toml"


def cli(*args: str, cwd: Path, config: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("BCARTNB_")}
    env["BCARTNB_CONFIG"] = str(config)
    return subprocess.run(
        [sys.executable, "-m", "bcartnb", *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=cwd,
        timeout=120,
    )


# --- the store -------------------------------------------------------------------------------


def test_segments_file_sits_beside_the_settings(tmp_path: Path) -> None:
    config = shop(tmp_path)
    assert load_settings(config).segments == tmp_path / "segments.toml"
    config.write_text(config.read_text("utf-8") + 'segments = "seg/s.toml"\n', encoding="utf-8")
    assert load_settings(config).segments == tmp_path / "seg" / "s.toml"


def test_save_get_list_and_the_file_is_readable_toml(tmp_path: Path) -> None:
    store = SegmentStore(tmp_path / "segments.toml")
    assert store.names() == []
    store.save("東京の卸売業", {"pref": "東京都", "業種": "卸売"})
    store.save("関西", {"都道府県": ["大阪府", "京都府"]})
    assert store.names() == ["東京の卸売業", "関西"]
    assert store.get("東京の卸売業") == {"pref": "東京都", "業種": "卸売"}
    data = tomllib.loads((tmp_path / "segments.toml").read_text("utf-8"))
    assert data["関西"]["filter"] == {"都道府県": ["大阪府", "京都府"]}
    assert data["関西"]["saved_at"].utcoffset() is not None  # Asia/Tokyo, aware
    assert "都道府県" in store.describe("関西")
    assert not list(tmp_path.glob(".tmp-*"))  # no temporary file left behind


def test_an_existing_name_is_refused_unless_overwrite(tmp_path: Path) -> None:
    store = SegmentStore(tmp_path / "segments.toml")
    store.save("東京", {"pref": "東京都"})
    with pytest.raises(SettingsError, match="already exists") as exc:
        store.save("東京", {"pref": "大阪府"})
    assert "すでにあります" in exc.value.ja
    assert store.get("東京") == {"pref": "東京都"}
    store.save("東京", {"pref": "大阪府"}, overwrite=True)
    assert store.get("東京") == {"pref": "大阪府"}
    store.delete("東京")
    assert store.names() == []
    with pytest.raises(SettingsError, match="not found"):
        store.delete("東京")


def test_unknown_segment_names_the_known_ones(tmp_path: Path) -> None:
    store = SegmentStore(tmp_path / "segments.toml")
    store.save("東京", {"pref": "東京都"})
    with pytest.raises(SettingsError) as exc:
        store.get("大阪")
    assert "セグメント「大阪」はありません" in exc.value.ja and "東京" in exc.value.ja


@pytest.mark.parametrize(
    ("name", "ja"),
    [
        ("", "空"),
        ("   ", "空"),
        ("\u3000", "空"),
        ("東京\r\n[evil]", "改行"),
        ("東京\n", "改行"),
        ("a\x00b", "改行"),
        ("a\u200bb", "見えない"),  # zero-width space
        ("a\u202eb", "見えない"),  # right-to-left override
        (" 東京", "空白"),
        ("東京\u3000", "空白"),
        ("x" * 61, "長すぎ"),
        (123, "文字列"),
    ],
)
def test_hostile_names_are_refused_in_japanese(tmp_path: Path, name: object, ja: str) -> None:
    store = SegmentStore(tmp_path / "segments.toml")
    with pytest.raises(SettingsError) as exc:
        store.save(name, {"pref": "東京都"})  # type: ignore[arg-type]
    assert ja in exc.value.ja
    assert not (tmp_path / "segments.toml").exists()


@pytest.mark.parametrize(
    ("flt", "ja"),
    [
        ({}, "空"),
        ([], "表"),
        ({"pref": "東京\r\n都"}, "改行"),
        ({"pref\n": "東京都"}, "改行"),
        ({"pref": "x" * 1001}, "長すぎ"),
        ({"pref": []}, "リスト"),
        ({"pref": {"like": "東"}}, "演算子"),
        ({"price_group_id": {"min": float("nan")}}, "NaN"),
        ({"pref": None}, "値"),
        ({"pref": [["nested"]]}, "値"),
    ],
)
def test_hostile_values_are_refused_in_japanese(tmp_path: Path, flt: object, ja: str) -> None:
    store = SegmentStore(tmp_path / "segments.toml")
    with pytest.raises(SettingsError) as exc:
        store.save("東京", flt)  # type: ignore[arg-type]
    assert ja in exc.value.ja


def test_markup_in_a_name_or_value_is_kept_as_text(tmp_path: Path) -> None:
    store = SegmentStore(tmp_path / "segments.toml")
    store.save("<script>alert(1)</script>", {"comp_name": {"contains": '"]\n'.strip() + "<b>"}})
    assert store.get("<script>alert(1)</script>") == {"comp_name": {"contains": '"]<b>'}}


def test_a_hand_broken_file_is_one_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "segments.toml"
    path.write_text('["東京"]\nfilter = "東京都"\n', encoding="utf-8")
    with pytest.raises(SettingsError) as exc:
        SegmentStore(path).names()
    assert "表" in exc.value.ja
    path.write_text("[東京\n", encoding="utf-8")
    with pytest.raises(SettingsError, match="not valid TOML"):
        SegmentStore(path).names()
    path.write_bytes('["東京"]\n'.encode("cp932"))
    with pytest.raises(SettingsError, match="not UTF-8"):
        SegmentStore(path).names()


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(
    name=st.text(min_size=0, max_size=70),
    value=st.one_of(
        st.text(max_size=40),
        st.integers(min_value=-(2**62), max_value=2**62),
        st.booleans(),
        st.lists(st.text(min_size=1, max_size=10), min_size=1, max_size=5),
    ),
)
def test_any_name_and_value_round_trips_or_is_refused(
    tmp_path: Path, name: str, value: object
) -> None:
    """Property: whatever a user types, the file stays readable and holds what was accepted."""
    path = tmp_path / "segments.toml"
    path.unlink(missing_ok=True)
    store = SegmentStore(path)
    try:
        stored = store.save(name, {"業種": value})
    except SettingsError as err:
        assert err.ja  # refused in Japanese, and nothing written
        assert not path.exists()
        return
    assert store.names() == [stored]
    assert store.get(stored) == {"業種": value}
    assert check_segment_name(stored) == stored


_SAVER = """
import sys
from bcartnb.segments import SegmentStore
store = SegmentStore(sys.argv[1])
for i in range(int(sys.argv[3])):
    store.save(f"{sys.argv[2]}-{i}", {"pref": "東京都", "n": i})
"""


def test_two_processes_saving_at_once_lose_nothing(tmp_path: Path) -> None:
    path = tmp_path / "segments.toml"
    procs = [
        subprocess.Popen([sys.executable, "-c", _SAVER, str(path), who, "25"])
        for who in ("A", "B", "C")
    ]
    assert [p.wait(timeout=120) for p in procs] == [0, 0, 0]
    names = SegmentStore(path).names()
    assert sorted(names) == sorted(f"{w}-{i}" for w in "ABC" for i in range(25))


# --- segment + filter ------------------------------------------------------------------------


def test_segment_and_filter_are_anded_and_a_column_in_both_is_an_error() -> None:
    cols = ["id", "pref", "業種", "mm_flag"]
    assert combine_filters({"pref": "東京都"}, {"業種": "卸売"}, cols, "東京") == {
        "pref": "東京都",
        "業種": "卸売",
    }
    with pytest.raises(SettingsError) as exc:
        combine_filters({"pref": "東京都"}, {"都道府県": "大阪府"}, cols, "東京")
    assert "「都道府県」はセグメント「東京」にもあります" in exc.value.ja


def test_campaign_file_with_a_segment_dry_run(tmp_path: Path) -> None:
    config = shop(tmp_path)
    SegmentStore(tmp_path / "segments.toml").save(
        "東京の卸売業", {"pref": "東京都", "業種": "卸売"}
    )
    (tmp_path / "c.toml").write_text(
        'members = "members.csv"\nsegment = "東京の卸売業"\nsubject = "{{ 会社名 }} 様"\n'
        'body = "本文"\n',
        encoding="utf-8",
    )
    out = cli("run", "c.toml", "--json", cwd=tmp_path, config=config)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["selected"] == 2  # 1001 and 1004

    # ANDed with the campaign's own filter
    (tmp_path / "c2.toml").write_text(
        'members = "members.csv"\nsegment = "東京の卸売業"\nsubject = "s"\nbody = "b"\n'
        "[filter]\nmm_flag = true\n",
        encoding="utf-8",
    )
    out = cli("run", "c2.toml", "--json", cwd=tmp_path, config=config)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["selected"] == 1

    # a column in both: exit 2, one line, Japanese first
    (tmp_path / "c3.toml").write_text(
        'members = "members.csv"\nsegment = "東京の卸売業"\nsubject = "s"\nbody = "b"\n'
        '[filter]\n"都道府県" = "大阪府"\n',
        encoding="utf-8",
    )
    out = cli("run", "c3.toml", cwd=tmp_path, config=config)
    assert out.returncode == 2 and out.stderr.count("\n") == 1
    assert "セグメント「東京の卸売業」にもあります" in out.stderr

    # an unknown segment: exit 2 naming the known ones
    (tmp_path / "c4.toml").write_text(
        'members = "members.csv"\nsegment = "関西"\nsubject = "s"\nbody = "b"\n',
        encoding="utf-8",
    )
    out = cli("run", "c4.toml", cwd=tmp_path, config=config)
    assert out.returncode == 2 and "セグメント「関西」はありません" in out.stderr
    assert "東京の卸売業" in out.stderr and "Traceback" not in out.stderr


def test_papermill_parameters_take_a_segment_and_the_plan_records_its_filter(
    tmp_path: Path,
) -> None:
    config = shop(tmp_path)
    settings_ = load_settings(config)
    store = SegmentStore(settings_.segments)
    store.save("東京", {"pref": "東京都"})
    spec = CampaignSpec.from_mapping(
        {
            "members": str(tmp_path / "members.csv"),
            "segment": "東京",
            "filter": '{"業種": "小売"}',  # papermill passes JSON text too
            "subject": "s",
            "body": "b",
        },
        where="notebook parameters",
    )
    assert spec.segment == "東京" and spec.to_params()["segment"] == "東京"
    plan = campaign.plan_campaign(spec, settings_)
    assert plan.audience.selected["id"].tolist() == [1002]
    # the plan records the filter the segment had: editing it later changes no started campaign
    assert plan.spec.segment is None and plan.spec.filter == {"pref": "東京都", "業種": "小売"}
    assert "segment" not in plan.spec.to_params()
    store.save("東京", {"pref": "大阪府"}, overwrite=True)
    again = campaign.plan_campaign(plan.spec, settings_)
    assert again.audience.selected["id"].tolist() == [1002]


def test_the_papermill_notebook_runs_a_saved_segment(tmp_path: Path) -> None:
    """`-p segment 東京の卸売業`: the real notebook, executed by papermill."""
    import papermill

    from bcartnb.report import read_summary

    config = shop(tmp_path)
    SegmentStore(load_settings(config).segments).save("東京の卸売業", {"pref": "東京都"})
    notebook = Path(__file__).resolve().parent.parent / "notebooks" / "campaign.ipynb"
    out = tmp_path / "out.ipynb"
    papermill.execute_notebook(
        str(notebook),
        str(out),
        parameters={
            "members": str(tmp_path / "members.csv"),
            "segment": "東京の卸売業",
            "filter": {"業種": "卸売"},
            "subject": "{{ 会社名 }} 様",
            "body": "本文\n",
            "settings_path": str(config),
        },
        kernel_name="python3",
        cwd=str(tmp_path),
        progress_bar=False,
    )
    summary = read_summary(out)
    # 東京都 AND 卸売: 1001 and 1004 (1004 is sendable too: opt_in_only is off)
    assert (summary["selected"], summary["sendable"], summary["dry_run"]) == (2, 2, True)


def test_a_hostile_segment_name_in_a_campaign_file_is_refused(tmp_path: Path) -> None:
    with pytest.raises(SettingsError) as exc:
        CampaignSpec.from_mapping(
            {"members": "m.csv", "segment": "東京\n[smtp]", "subject": "s", "body": "b"}
        )
    assert "改行" in exc.value.ja


# --- the command line ------------------------------------------------------------------------


def test_cli_segments_save_list_json_delete(tmp_path: Path) -> None:
    config = shop(tmp_path)
    out = cli("segments", cwd=tmp_path, config=config)
    assert out.returncode == 0 and "まだありません" in out.stdout
    out = cli(
        "segments", "--save", "東京の卸売業", "--filter", '{"pref": "東京都", "業種": "卸売"}',
        cwd=tmp_path, config=config,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    out = cli("segments", "--save", "東京の卸売業", "--filter", "{}", cwd=tmp_path, config=config)
    assert out.returncode == 2 and out.stderr.startswith("bcartnb: error: 設定のエラー")
    out = cli("segments", "--save", "x", "--filter", "{bad", cwd=tmp_path, config=config)
    assert out.returncode == 2 and "JSON" in out.stderr and out.stderr.count("\n") == 1
    out = cli("segments", cwd=tmp_path, config=config)
    assert out.stdout.startswith("東京の卸売業: ") and "東京都" in out.stdout
    out = cli("segments", "--json", cwd=tmp_path, config=config)
    listed = json.loads(out.stdout)
    assert [s["name"] for s in listed] == ["東京の卸売業"]
    assert listed[0]["filter"] == {"pref": "東京都", "業種": "卸売"}
    out = cli("segments", "--delete", "東京の卸売業", cwd=tmp_path, config=config)
    assert out.returncode == 0
    assert json.loads(cli("segments", "--json", cwd=tmp_path, config=config).stdout) == []


def test_cli_two_processes_saving_at_once(tmp_path: Path) -> None:
    config = shop(tmp_path)
    env = {k: v for k, v in os.environ.items() if not k.startswith("BCARTNB_")}
    env["BCARTNB_CONFIG"] = str(config)
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "bcartnb", "segments", "--save", f"seg{i}",
             "--filter", json.dumps({"pref": "東京都"})],
            env=env, cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
        )
        for i in range(6)
    ]  # fmt: skip
    errors = [p.communicate(timeout=120)[1] for p in procs]
    assert [p.returncode for p in procs] == [0] * 6, errors
    assert sorted(SegmentStore(tmp_path / "segments.toml").names()) == [f"seg{i}" for i in range(6)]
