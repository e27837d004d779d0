from __future__ import annotations

from pathlib import Path

import pytest

from bcartnb.campaign import CAMPAIGN_KEYS, CampaignSpec, load_campaign
from bcartnb.exceptions import SettingsError


def test_toml_keys_and_relative_members_path(tmp_path: Path) -> None:
    (tmp_path / "c.toml").write_text(
        'members = "m.csv"\ntemplate = "ニュースレター"\nchecked = [3, 1, 3]\n'
        '[filter]\npref = ["東京都", "大阪府"]\nprice_group_id = { min = 2, max = 5 }\n',
        encoding="utf-8",
    )
    spec = load_campaign(tmp_path / "c.toml")
    assert spec.members == tmp_path / "m.csv"
    assert spec.filter == {"pref": ["東京都", "大阪府"], "price_group_id": {"min": 2, "max": 5}}
    assert spec.checked == (3, 1)
    assert spec.send is False and spec.insert_signature is True and spec.encoding == "utf-8"
    # segment and track (when true) only appear when set: older campaigns keep their params
    assert set(spec.to_params()) == set(CAMPAIGN_KEYS) - {
        "send",
        "segment",
        "track",
        "orders",
        "results",
    }
    off = CampaignSpec.from_mapping({"members": "m.csv", "template": "t", "track": False})
    assert off.track is False and off.to_params()["track"] is False
    again = CampaignSpec.from_mapping(off.to_params())  # a resume replays it
    assert again.track is False
    # orders only when given: a campaign without them keeps its old fingerprint
    assert spec.orders is None
    text = (tmp_path / "c.toml").read_text(encoding="utf-8")
    (tmp_path / "c.toml").write_text('orders = "受注.csv"\n' + text, encoding="utf-8")
    spec = load_campaign(tmp_path / "c.toml")
    assert spec.orders == tmp_path / "受注.csv"
    assert spec.to_params()["orders"] == str(tmp_path / "受注.csv")
    # results (a sent campaign's id) only when given, checked as an id
    follow = CampaignSpec.from_mapping({**off.to_params(), "results": " 20261206-101500-a1b2c3 "})
    assert follow.results == "20261206-101500-a1b2c3"
    assert CampaignSpec.from_mapping(follow.to_params()).results == follow.results
    for bad in ("x\ny", "../../etc", 5, "あ"):
        with pytest.raises(SettingsError, match="results"):
            CampaignSpec.from_mapping({"members": "m.csv", "template": "t", "results": bad})


def test_papermill_style_values() -> None:
    spec = CampaignSpec.from_mapping(
        {
            "members": "m.csv",
            "filter": '{"mm_flag": true}',
            "checked": "5, 7",
            "subject": "s",
            "body": "b",
            "encoding": "ISO-2022-JP",
            "send": True,
        }
    )
    assert spec.filter == {"mm_flag": True}
    assert spec.checked == (5, 7)
    assert spec.encoding == "iso-2022-jp" and spec.send is True


@pytest.mark.parametrize(
    ("data", "needle"),
    [
        ({"members": "m.csv", "subject": "s", "body": "b", "sned": True}, "unknown key 'sned'"),
        ({"subject": "s", "body": "b"}, "'members' is required"),
        ({"members": "m.csv", "subject": "s"}, "give a template, or both subject and body"),
        (
            {"members": "m.csv", "template": "t", "send": "yes"},
            "send must be true or false, not 'yes'",
        ),
        ({"members": "m.csv", "template": "t", "encoding": "sjis"}, "encoding must be one of"),
        ({"members": "m.csv", "template": "t", "checked": ["a"]}, "non-id value 'a'"),
        ({"members": "m.csv", "template": "t", "checked": [1.5]}, "non-id value 1.5"),
        ({"members": "m.csv", "template": "t", "filter": "{bad"}, "filter is not valid JSON"),
    ],
)
def test_bad_campaign_keys_are_named(data: dict[str, object], needle: str) -> None:
    with pytest.raises(SettingsError) as exc:
        CampaignSpec.from_mapping(data, where="c.toml")
    assert "c.toml" in str(exc.value) and needle in str(exc.value)


def test_missing_and_broken_files(tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match="campaign file not found"):
        load_campaign(tmp_path / "nope.toml")
    (tmp_path / "b.toml").write_text("members = ", encoding="utf-8")
    with pytest.raises(SettingsError, match=r"b\.toml: not valid TOML"):
        load_campaign(tmp_path / "b.toml")
