"""Plans, months and the cap arithmetic (pure rules; storage is tested in test_ledger.py)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bcartnb import quota
from bcartnb.exceptions import InputError, QuotaExceededError, SettingsError
from bcartnb.quota import (
    PLANS,
    TOKYO,
    QuotaStatus,
    check_quota,
    month_of,
    parse_month,
    resolve_plan,
)

# The table in the seed document: plan → (members, mails per month).
SEED_TABLE = {
    "ライトプラン": (50, 100),
    "プラン10": (1_000, 2_000),
    "プラン30": (3_000, 6_000),
    "プラン50": (5_000, 10_000),
    "プラン100": (10_000, 20_000),
    "プラン300": (30_000, 60_000),
}


@pytest.mark.parametrize(("name", "caps"), SEED_TABLE.items())
def test_each_plan_caps_at_twice_its_member_cap(name: str, caps: tuple[int, int]) -> None:
    plan = resolve_plan(name)
    assert plan.name == name
    assert (plan.member_cap, plan.monthly_cap) == caps


def test_own_smtp_has_no_cap() -> None:
    plan = resolve_plan("自社SMTP")
    assert plan.member_cap is None and plan.monthly_cap is None
    assert plan.key == "own-smtp"


def test_plans_are_exactly_the_contract_names() -> None:
    assert [p.name for p in PLANS] == [*SEED_TABLE, "自社SMTP"]
    assert [p.key for p in PLANS] == [
        "light",
        "plan10",
        "plan30",
        "plan50",
        "plan100",
        "plan300",
        "own-smtp",
    ]


@pytest.mark.parametrize(
    ("given_name", "expected"),
    [
        ("light", "ライトプラン"),
        ("LIGHT", "ライトプラン"),
        ("plan10", "プラン10"),
        ("Plan300", "プラン300"),
        ("プラン１００", "プラン100"),  # full-width digits from an IME
        (" プラン50 ", "プラン50"),
        ("own-smtp", "自社SMTP"),
        ("own_smtp", "自社SMTP"),
        ("自社ＳＭＴＰ", "自社SMTP"),
    ],
)
def test_resolve_plan_accepts_names_and_aliases(given_name: str, expected: str) -> None:
    assert resolve_plan(given_name).name == expected


def test_a_plan_reads_as_its_japanese_name() -> None:
    assert str(resolve_plan("plan30")) == "プラン30"
    assert resolve_plan(resolve_plan("plan30")) is resolve_plan("plan30")


@pytest.mark.parametrize("bad", ["plan20", "", "プラン", "gold"])
def test_unknown_plan_lists_the_valid_ones(bad: str) -> None:
    with pytest.raises(SettingsError) as exc:
        resolve_plan(bad)
    msg = str(exc.value)
    assert "\n" not in msg
    assert repr(bad) in msg
    for plan in PLANS:
        assert plan.name in msg and plan.key in msg


# --- months ------------------------------------------------------------------------------


def test_month_boundary_is_tokyo_midnight() -> None:
    assert month_of(datetime(2026, 11, 30, 23, 59, 59, tzinfo=TOKYO)) == "2026-11"
    assert month_of(datetime(2026, 12, 1, 0, 0, 0, tzinfo=TOKYO)) == "2026-12"
    # The same instants seen from UTC: 15:00 UTC on the 30th is already December in Tokyo.
    assert month_of(datetime(2026, 11, 30, 14, 59, 59, tzinfo=UTC)) == "2026-11"
    assert month_of(datetime(2026, 11, 30, 15, 0, 0, tzinfo=UTC)) == "2026-12"
    assert month_of(datetime(2026, 12, 31, 15, 0, tzinfo=UTC)) == "2027-01"


def test_month_of_refuses_naive_datetimes() -> None:
    with pytest.raises(ValueError, match="naive"):
        month_of(datetime(2026, 11, 30, 23, 59))


@settings(max_examples=200, deadline=None)
@given(
    year=st.integers(2000, 2099),
    month=st.integers(1, 12),
    offset_minutes=st.integers(-12 * 60, 14 * 60),
)
def test_month_changes_exactly_at_tokyo_midnight(
    year: int, month: int, offset_minutes: int
) -> None:
    start = datetime(year, month, 1, tzinfo=TOKYO)
    prev = f"{year - 1}-12" if month == 1 else f"{year}-{month - 1:02d}"
    # Whatever zone the machine (or the caller's datetime) is in, only the instant matters.
    zone = timezone(timedelta(minutes=offset_minutes))
    assert month_of(start.astimezone(zone)) == f"{year}-{month:02d}"
    assert month_of((start - timedelta(microseconds=1)).astimezone(zone)) == prev


@pytest.mark.parametrize(("value", "expected"), [("2026-11", "2026-11"), (" 2026-01", "2026-01")])
def test_parse_month(value: str, expected: str) -> None:
    assert parse_month(value) == expected


@pytest.mark.parametrize("bad", ["2026-13", "2026-00", "2026-1", "26-11", "2026/11", "november"])
def test_parse_month_refuses_bad_input(bad: str) -> None:
    with pytest.raises(InputError, match="YYYY-MM"):
        parse_month(bad)


# --- status and the check ------------------------------------------------------------------


def test_status_dict_has_the_contract_keys() -> None:
    status = QuotaStatus(resolve_plan("plan10"), "2026-11", used=150, reserved=30)
    assert status.as_dict() == {
        "plan": "プラン10",
        "month": "2026-11",
        "cap": 2000,
        "used": 150,
        "remaining": 1820,
    }


def test_uncapped_status_reports_null_cap_and_remaining() -> None:
    status = QuotaStatus(resolve_plan("own-smtp"), "2026-11", used=123_456)
    assert status.as_dict()["cap"] is None and status.as_dict()["remaining"] is None
    assert check_quota(status, 10**9).reserved == 10**9


def test_remaining_never_goes_negative() -> None:
    # Usage above the cap is possible (a plan downgraded mid-month); the cap still holds.
    status = QuotaStatus(resolve_plan("light"), "2026-11", used=150)
    assert status.remaining == 0
    assert not status.fits(1)


def test_check_quota_accepts_an_exact_fit() -> None:
    status = QuotaStatus(resolve_plan("light"), "2026-11", used=60, reserved=30)
    after = check_quota(status, 10)
    assert after.remaining == 0 and after.reserved == 40 and after.used == 60


def test_check_quota_refusal_states_cap_used_reserved_needed() -> None:
    status = QuotaStatus(resolve_plan("light"), "2026-11", used=60, reserved=30)
    with pytest.raises(QuotaExceededError) as exc:
        check_quota(status, 11)
    msg = str(exc.value)
    assert exc.value.exit_code == 3
    for part in ("cap 100", "used 60", "reserved 30", "needed 11", "remaining 10", "2026-11"):
        assert part in msg
    assert "ライトプラン" in msg
    assert exc.value.ja == (
        "送信件数 11件は、2026-11 のメール配信上限数 100件（ライトプラン）の残り 10件を超えます。"
        "今月の配信済み・予約 90件（うち送信中の配信の予約 30件）。何も送信していません。"
        "送信先を絞り込むか、翌月に送るか、プランを見直してください。"
    )


@settings(max_examples=200, deadline=None)
@given(
    plan=st.sampled_from(PLANS[:-1]),
    used=st.integers(0, 70_000),
    reserved=st.integers(0, 70_000),
    needed=st.integers(0, 70_000),
)
def test_check_quota_never_lets_the_total_pass_the_cap(
    plan: quota.Plan, used: int, reserved: int, needed: int
) -> None:
    status = QuotaStatus(plan, "2026-11", used=used, reserved=reserved)
    assert plan.monthly_cap is not None
    try:
        after = check_quota(status, needed)
    except QuotaExceededError:
        assert used + reserved + needed > plan.monthly_cap
    else:
        assert after.used + after.reserved <= plan.monthly_cap


def test_after_projects_the_dry_run() -> None:
    status = QuotaStatus(resolve_plan("plan10"), "2026-11", used=100)
    assert status.after(50).used == 150 and status.used == 100


def test_unknown_plan_is_explained_in_japanese_first() -> None:
    with pytest.raises(SettingsError) as exc:
        resolve_plan("gold")
    assert exc.value.ja.startswith("プラン「gold」はありません。")
    assert "\n" not in exc.value.ja and "プラン10" in exc.value.ja


def test_quota_warning_says_the_numbers_only_when_over() -> None:
    """Issue 14 (5): the early warning uses the refusal's arithmetic (QuotaStatus.over)."""
    from bcartnb.quota import quota_warning_ja

    light = QuotaStatus(resolve_plan("ライトプラン"), "2026-11", used=3, reserved=0)
    assert light.over(97) == 0 and quota_warning_ja(light, 97) == ""
    assert light.over(205) == 108 == 205 - light.remaining  # type: ignore[operator]
    text = quota_warning_ja(light, 205)
    assert text.startswith("送信件数 205件は、今月の残り 97件を 108件超えています")
    assert "メール配信上限数 100件／月、ライトプラン" in text
    held = QuotaStatus(resolve_plan("light"), "2026-11", used=50, reserved=40)
    assert held.over(11) == 1 and not held.fits(11) and held.fits(10)
    assert "チェックした会員の送信件数 11件" in quota_warning_ja(
        held, 11, "チェックした会員の送信件数"
    )
    own = QuotaStatus(resolve_plan("own-smtp"), "2026-11", used=10**6)
    assert own.over(10**6) == 0 and quota_warning_ja(own, 10**6) == ""


@settings(deadline=None)
@given(
    used=st.integers(0, 3000),
    reserved=st.integers(0, 3000),
    needed=st.integers(0, 5000),
    plan=st.sampled_from(["light", "plan10", "own-smtp"]),
)
def test_property_over_is_zero_exactly_when_it_fits(
    used: int, reserved: int, needed: int, plan: str
) -> None:
    from bcartnb.quota import quota_warning_ja

    # the rule as the README's plan table writes it: twice the member cap, 自社SMTP none
    cap = {"light": 100, "plan10": 2000, "own-smtp": None}[plan]
    over = 0 if cap is None else max(used + reserved + needed - cap, 0)
    status = QuotaStatus(resolve_plan(plan), "2026-11", used=used, reserved=reserved)
    assert status.cap == cap and status.over(needed) == over
    assert status.fits(needed) == (over == 0)
    warning = quota_warning_ja(status, needed)
    assert (warning == "") == (over == 0)
    if over:
        left = max(cap - used - reserved, 0)  # type: ignore[operator]
        assert warning.startswith(
            f"送信件数 {needed:,}件は、今月の残り {left:,}件を {over:,}件超えて"
        )
