"""Japan's summer time (1948-1951) in a member file: read, or refused with a BcartnbError.

Tokyo skipped the hour after midnight each spring and lived it twice each autumn. A member
file (a snapshot or a CSV) with such a time must never surface pandas' own
nonexistent/ambiguous error: a doubled time is read as the first (summer-time) one, midnight
of a day that began at 01:00 is that day's start, and any other skipped time is refused with
the row and column, Japanese first (bcartnb/members/typed.py: ``tokyo_times``).
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bcartnb.exceptions import BcartnbError, MembersFileError
from bcartnb.members import read_members, read_snapshot
from bcartnb.members.snapshot import METADATA_KEY, SNAPSHOT_FORMAT

TOKYO = ZoneInfo("Asia/Tokyo")


def _transitions() -> list[datetime]:
    """The local midnights at which Tokyo's offset changed, found from the zone itself."""
    found = []
    t = datetime(1947, 1, 1, tzinfo=UTC)
    before = t.astimezone(TOKYO).utcoffset()
    while t.year < 1953:
        t += timedelta(hours=1)
        now = t.astimezone(TOKYO).utcoffset()
        if now != before:
            local = t.astimezone(TOKYO)
            found.append(datetime(local.year, local.month, local.day))
            before = now
    return found


EDGES = _transitions()


def _skipped(wall: datetime) -> bool:
    """A wall-clock time Tokyo's clocks never showed (it does not survive the round trip)."""
    aware = wall.replace(tzinfo=TOKYO)
    return aware.astimezone(UTC).astimezone(TOKYO).replace(tzinfo=None) != wall


FORMATS = ("%Y/%m/%d %H:%M:%S", "%Y-%m-%d %H:%M:%S", "%Y/%m/%d %H:%M", "%Y/%m/%d")
NEAR_EDGES = st.builds(
    lambda day, seconds: day + timedelta(seconds=seconds),
    st.sampled_from(EDGES),
    st.integers(-2 * 3600, 3 * 3600),
)
WALLS = st.one_of(
    NEAR_EDGES,
    NEAR_EDGES.map(lambda d: d.replace(second=0)),
    st.datetimes(min_value=datetime(1940, 1, 1), max_value=datetime(2060, 12, 31)),
)
CELLS = st.one_of(
    st.builds(lambda d, f: d.strftime(f), WALLS, st.sampled_from(FORMATS)),
    st.none(),
    st.just(""),
)


def write_snapshot(path: Path, columns: dict[str, list[str | None]]) -> Path:
    table = pa.Table.from_arrays(
        [pa.array(v, type=pa.string()) for v in columns.values()], names=list(columns)
    )
    info = {"format": SNAPSHOT_FORMAT, "pulled_at": "2026-12-06T09:00:00+09:00", "api_url": "u"}
    pq.write_table(table.replace_schema_metadata({METADATA_KEY: json.dumps(info).encode()}), path)
    return path


def write_csv(path: Path, columns: dict[str, list[str | None]]) -> Path:
    pd.DataFrame(columns).to_csv(path, index=False, encoding="utf-8")
    return path


def members(cells: list[str | None]) -> dict[str, list[str | None]]:
    n = len(cells)
    return {
        "id": [str(i + 1) for i in range(n)],
        "email": [f"m{i}@example.jp" for i in range(n)],
        "created_at": cells,
        "初回取引日": list(reversed(cells)),  # a custom field: dates, or text
    }


def _wall(cell: str) -> datetime:
    for form in FORMATS:
        try:
            return datetime.strptime(cell, form)
        except ValueError:
            continue
    raise AssertionError(cell)


def check_read(read: object, cells: list[str | None]) -> None:
    """A frame whose times are the written ones (a doubled one the first, a skipped midnight
    the day's start), or a BcartnbError naming a skipped time; nothing else."""
    try:
        frame = read()  # type: ignore[operator]
    except BcartnbError as err:
        assert isinstance(err, MembersFileError) and err.ja
        assert "\n" not in str(err) and "夏時間" in err.ja and "行目" in err.ja
        assert any(
            c and _skipped(_wall(c)) and _wall(c).time() != datetime.min.time() for c in cells
        )
        return
    for cell, got in zip(cells, frame["created_at"], strict=True):
        if not cell:
            assert pd.isna(got)
            continue
        wall = _wall(cell)
        if _skipped(wall):  # only midnight is read: the day began at 01:00
            assert wall.time() == datetime.min.time()
            assert got == pd.Timestamp(wall + timedelta(hours=1), tz=TOKYO)
            continue
        assert got.tz_convert(TOKYO).tz_localize(None) == pd.Timestamp(wall)
        # a doubled hour is the first, summer-time, one (Python's fold=0)
        assert got.utcoffset() == wall.replace(tzinfo=TOKYO).utcoffset()


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(CELLS, min_size=1, max_size=6))
def test_a_summer_time_value_is_read_or_refused_by_a_bcartnb_error(
    tmp_path_factory: pytest.TempPathFactory, cells: list[str | None]
) -> None:
    folder = tmp_path_factory.mktemp("dst")
    columns = members(cells)
    check_read(lambda: read_snapshot(write_snapshot(folder / "s.parquet", columns)), cells)
    check_read(lambda: read_members(write_csv(folder / "m.csv", columns)), cells)


def test_the_edges_are_the_zone_s() -> None:
    """Eight changes, each at a local midnight: the generator above hits real edges."""
    assert len(EDGES) == 8 and {d.year for d in EDGES} == {1948, 1949, 1950, 1951}
    assert _skipped(datetime(1949, 4, 3, 0, 30)) and not _skipped(datetime(1949, 9, 11, 0, 30))


@pytest.mark.parametrize("suffix", [".parquet", ".csv"])
def test_each_kind_of_summer_time_value(tmp_path: Path, suffix: str) -> None:
    write = write_snapshot if suffix == ".parquet" else write_csv
    doubled = write(
        tmp_path / f"a{suffix}", members(["2024/05/01 12:00:00", "1949/09/11 00:30:00"])
    )
    frame = read_members(doubled)
    assert frame["created_at"].iloc[1] == pd.Timestamp("1949-09-11 00:30:00+10:00")
    assert frame["初回取引日"].iloc[0] == pd.Timestamp("1949-09-11 00:30:00+10:00")

    day = write(tmp_path / f"b{suffix}", members(["1949/04/03 00:00:00", "1950/05/07"]))
    frame = read_members(day)
    assert frame["created_at"].tolist() == [
        pd.Timestamp("1949-04-03 01:00:00+10:00"),
        pd.Timestamp("1950-05-07 01:00:00+10:00"),
    ]

    skipped = write(
        tmp_path / f"c{suffix}", members(["2024/05/01 12:00:00", "1949/04/03 00:30:00"])
    )
    with pytest.raises(MembersFileError) as err:
        read_members(skipped)
    assert err.value.ja is not None
    assert err.value.ja.endswith(
        "の 3 行目「created_at」の '1949/04/03 00:30:00' は日本時間にない時刻です"
        "（1948〜1951年の夏時間で飛ばされた1時間）。"
    )
    assert "row 3, column created_at: '1949/04/03 00:30:00' is not a time in Japan" in str(
        err.value
    )


def test_a_custom_field_with_a_skipped_time_stays_text(tmp_path: Path) -> None:
    """A custom column is dates only when every value is one (a skipped time is not)."""
    columns = members(["2024/05/01 12:00:00", "2024/05/02 12:00:00"])
    columns["初回取引日"] = ["2024/05/01 00:00:00", "1951/05/06 00:15:00"]
    frame = read_snapshot(write_snapshot(tmp_path / "s.parquet", columns))
    assert frame["初回取引日"].tolist() == ["2024/05/01 00:00:00", "1951/05/06 00:15:00"]


# --- a date filter over those days -------------------------------------------------------------

INSTANTS = st.builds(
    lambda day, seconds: (day.replace(tzinfo=TOKYO) + timedelta(seconds=seconds)).astimezone(UTC),
    st.sampled_from(EDGES),
    st.integers(-2 * 86400, 2 * 86400),
)
DAYS = st.builds(
    lambda day, shift: (day + timedelta(days=shift)).date(),
    st.sampled_from(EDGES),
    st.integers(-1, 1),
)
ORACLE = {
    "from": lambda day, wall: day >= wall,
    "to": lambda day, wall: day <= wall,
    "before": lambda day, wall: day < wall,
    "after": lambda day, wall: day > wall,
}


@settings(max_examples=150, deadline=None)
@given(st.lists(INSTANTS, min_size=1, max_size=8), st.sampled_from([*ORACLE, "equals"]), DAYS)
def test_a_date_filter_takes_each_member_by_its_tokyo_day(
    instants: list[datetime], op: str, wall: object
) -> None:
    """``from``/``to``/``before``/``after`` and equality compare the member's day on Tokyo's
    clock, the days summer time began and ended included (their start is 01:00 or a doubled
    midnight), and never raise pandas' error."""
    from bcartnb.filters import apply_filter

    frame = pd.DataFrame(
        {
            "id": range(1, len(instants) + 1),
            "email": [f"m{i}@example.jp" for i in range(len(instants))],
            "created_at": pd.Series(instants, dtype="datetime64[us, UTC]").dt.tz_convert(TOKYO),
        }
    )
    condition = str(wall) if op == "equals" else {op: str(wall)}
    got = apply_filter(frame, {"created_at": condition})["id"].tolist()
    days = [t.astimezone(TOKYO).date() for t in instants]
    keep = ORACLE.get(op, lambda day, w: day == w)
    assert got == [i + 1 for i, day in enumerate(days) if keep(day, wall)]
