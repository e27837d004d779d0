"""予約配信's time as a user types it (`--at`): any text is a future aware time or one
Japanese error, never a traceback; the clock's override (BCARTNB_NOW) the same."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from bcartnb.campaign import parse_send_at
from bcartnb.exceptions import InputError
from bcartnb.quota import TOKYO, now_tokyo

NOW = datetime(2026, 12, 9, 10, 0, tzinfo=TOKYO)


@settings(max_examples=400, deadline=None)
@given(
    st.one_of(
        st.text(max_size=40),
        st.datetimes().map(lambda d: d.isoformat(sep=" ")),
        st.builds(
            lambda d, h: f"{d.isoformat()}{h:+03d}:00",
            st.datetimes(),
            st.integers(min_value=-23, max_value=23),
        ),
    )
)
@example("0001-01-01T00:00+23:00")  # found: moving these to Tokyo overflowed
@example("9999-12-31T23:59-23:00")
@example("2026-12-10 09:00\r\nBcc: x@example.com")
def test_any_text_is_a_future_time_or_one_japanese_error(text: str) -> None:
    try:
        moment = parse_send_at(text, now=NOW)
    except InputError as err:
        assert err.ja and "\n" not in err.line()
        return
    assert moment.tzinfo is not None and moment > NOW
    assert moment.utcoffset() == timedelta(hours=9)


def test_the_marketers_way_of_writing_it_is_tokyo_time() -> None:
    assert parse_send_at("2026-12-10 09:00", now=NOW) == datetime(2026, 12, 10, 9, tzinfo=TOKYO)
    assert parse_send_at("2026/12/10 09:00", now=NOW) == datetime(2026, 12, 10, 9, tzinfo=TOKYO)
    utc = parse_send_at("2026-12-10T00:00+00:00", now=NOW)
    assert utc == datetime(2026, 12, 10, 9, tzinfo=TOKYO)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("2026-12-10T09:00", datetime(2026, 12, 10, 9, tzinfo=TOKYO)),
        ("2026-12-10T00:00+00:00", datetime(2026, 12, 10, 9, tzinfo=TOKYO)),
    ],
)
def test_bcartnb_now_sets_the_clock(
    monkeypatch: pytest.MonkeyPatch, value: str, expected: datetime
) -> None:
    monkeypatch.setenv("BCARTNB_NOW", value)
    assert now_tokyo() == expected and now_tokyo().utcoffset() == timedelta(hours=9)


@pytest.mark.parametrize(
    "value", ["tomorrow", "2026-13-01", "2026-12-10T09:00+99:00", "0001-01-01T00:00+23:00"]
)
def test_a_bad_bcartnb_now_is_refused(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    monkeypatch.setenv("BCARTNB_NOW", value)
    with pytest.raises(InputError, match="BCARTNB_NOW"):
        now_tokyo()
