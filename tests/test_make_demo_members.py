"""The demo member generator (data/make_demo_members.py): linear, and the same files as before.

The committed demo file is compared byte for byte by ``test_demo_members_are_reproducible``
in tests/test_members.py; here the one step that changed (drawing an earlier member to
share an address with) is held to the plain list it replaced, larger files to the digests
the quadratic generator wrote, and any size to what the member reader accepts.
"""

from __future__ import annotations

import hashlib
import importlib.util
import random
from pathlib import Path
from types import ModuleType

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bcartnb.members import check_addresses, read_members

GENERATOR = Path(__file__).resolve().parent.parent / "data" / "make_demo_members.py"
#: sha256 of the CP932 files the quadratic generator (before issue 24) wrote: (rows, seed).
QUADRATIC_DIGESTS = {
    (5_000, 1): "080ea371994aaa3e12e88e94f96f38e463ab41a2d626605dee047979ef2c3b5d",
    (20_000, 7): "354e5caf66b2ed5619216159216eb6eb3776fcd5f39446e140249e002d5d0490",
}


@pytest.fixture(scope="module")
def gen() -> ModuleType:
    spec = importlib.util.spec_from_file_location("make_demo_members", GENERATOR)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def written(gen: ModuleType, rows: int, seed: int, path: Path) -> bytes:
    gen.write_members(gen.make_members(rows, seed), path)
    return path.read_bytes()


@settings(max_examples=300, deadline=None)
@given(
    bad=st.sets(st.integers(0, 300), max_size=120),
    pos=st.integers(0, 320),
    seed=st.integers(0, 2**32),
)
def test_the_draw_equals_choice_over_the_plain_list(
    gen: ModuleType, bad: set[int], pos: int, seed: int
) -> None:
    fast, plain = random.Random(seed), random.Random(seed)
    got = gen.Earlier(list(bad)).draw(fast, pos)
    earlier = [j for j in range(pos) if j not in bad]
    want = plain.choice(earlier) if earlier else None
    assert got == want
    assert fast.getstate() == plain.getstate()  # the same draws: the rest of the file follows


@pytest.mark.parametrize(("rows", "seed"), sorted(QUADRATIC_DIGESTS))
def test_the_same_bytes_as_the_quadratic_generator(
    gen: ModuleType, tmp_path: Path, rows: int, seed: int
) -> None:
    raw = written(gen, rows, seed, tmp_path / "m.csv")
    assert hashlib.sha256(raw).hexdigest() == QUADRATIC_DIGESTS[rows, seed]


@settings(max_examples=15, deadline=None)
@given(rows=st.integers(1, 400), seed=st.integers(0, 2**32))
def test_any_size_is_deterministic_and_a_valid_member_file(
    gen: ModuleType, tmp_path_factory: pytest.TempPathFactory, rows: int, seed: int
) -> None:
    folder = tmp_path_factory.mktemp("gen")
    first = written(gen, rows, seed, folder / "a.csv")
    assert written(gen, rows, seed, folder / "b.csv") == first
    df = read_members(folder / "a.csv")
    assert df["id"].tolist() == list(range(1001, 1001 + rows))
    assert df.attrs["encoding"] == "cp932"
    reasons = check_addresses(df["email"])
    # the bad kinds take their share of the members (all of them in a tiny file), no other
    # address is bad, and a shared address (another case) is made only for its share
    assert reasons.notna().sum() == min(rows, max(len(gen.BAD_ADDRESSES), rows * 6 // 100))
    valid = df["email"][reasons.isna()].str.strip(" \u3000")
    assert (valid != valid.str.lower()).sum() <= max(8, rows * 3 // 100)
