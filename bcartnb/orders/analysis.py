"""Who bought what, in counts: the tables of the customers notebook (``notebooks/customers.ipynb``).

Every table is counted from the members *with* their purchase columns (the one join,
:func:`bcartnb.orders.with_purchases`), never from the orders again: a count here is the
number of members a campaign filtering the same column would select, and the segment the
notebook ends on is a filter dict that :mod:`bcartnb.filters` runs (:func:`send_guidance`), so
the notebook, the wizard and ``bcartnb run`` cannot disagree on who is 休眠.

The charts of these tables are drawn by :mod:`bcartnb.report.customers` (a face).
"""

from __future__ import annotations

import json
import os
import shlex
from collections.abc import Mapping
from typing import Any, Final

import numpy as np
import pandas as pd
import tomli_w

from bcartnb.exceptions import InputError
from bcartnb.filters import apply_filter, describe_filter
from bcartnb.members import COLUMN_LABELS
from bcartnb.orders.purchases import GROUPS, PURCHASE_COLUMNS

__all__ = [
    "RANKS",
    "dormant_by",
    "group_counts",
    "recency_curve",
    "rf_grid",
    "rfm_counts",
    "segment_filter",
    "send_guidance",
]

#: The R, F and M ranks, best last.
RANKS: Final = (1, 2, 3, 4, 5)
_COUNT: Final = "会員数"


def _check(frame: pd.DataFrame, *columns: str) -> None:
    """The frame must carry the purchase columns (and ``columns``): a bare member list has none."""
    missing = [c for c in (*PURCHASE_COLUMNS, *columns) if c not in frame.columns]
    if missing:
        raise InputError(
            f"the members have no column {missing[0]!r}: join the orders first "
            "(bcartnb.campaign.members_with_orders)",
            ja=f"会員に「{missing[0]}」の列がありません。受注ファイル（orders）を指定して、"
            "購入履歴の列を付けてください。",
        )


def group_counts(frame: pd.DataFrame) -> pd.DataFrame:
    """Members in each 顧客グループ (every group listed, 0 included) and their share."""
    _check(frame)
    counts = frame["顧客グループ"].value_counts().reindex(list(GROUPS), fill_value=0)
    out = pd.DataFrame({_COUNT: counts.astype("int64")})
    out["割合"] = _share(out[_COUNT], len(frame))
    out.index.name = "顧客グループ"
    return out


def _share(part: pd.Series, whole: int | pd.Series) -> pd.Series:
    """``part / whole`` in percent to one decimal, 0 where the whole is 0."""
    den = np.asarray(whole, dtype="float64")
    with np.errstate(divide="ignore", invalid="ignore"):
        pct = np.where(den > 0, part.to_numpy(dtype="float64") * 100 / den, 0.0)
    return pd.Series(np.round(pct, 1), index=part.index)


def rfm_counts(frame: pd.DataFrame) -> pd.DataFrame:
    """Buyers at each rank (1–5) of R, F and M; a member without a purchase has no rank."""
    _check(frame)
    out = pd.DataFrame(
        {
            name: frame[name].value_counts().reindex(list(RANKS), fill_value=0).astype("int64")
            for name in ("R", "F", "M")
        }
    )
    out.index.name = "ランク"
    return out


def rf_grid(frame: pd.DataFrame) -> pd.DataFrame:
    """Buyers by R (rows, 5 first: the most recent) and F (columns, 1 to 5)."""
    _check(frame)
    bought = frame[frame["R"].notna()]
    grid = pd.crosstab(bought["R"].astype("int64"), bought["F"].astype("int64"))
    grid = grid.reindex(index=list(RANKS)[::-1], columns=list(RANKS), fill_value=0)
    grid.index.name, grid.columns.name = "R", "F"
    return grid.astype("int64")


def _labels(values: pd.Series, names: Mapping[int, str] | None) -> pd.Series:
    """A column's values as the notebook shows them: an id by its name, a blank as 「（空欄）」."""
    keys = values.astype("object").where(values.notna(), "（空欄）")
    if names:
        keys = keys.map(
            lambda v: names.get(int(v), str(v)) if isinstance(v, int | np.integer) else v
        )
    return keys.astype("str")


def dormant_by(
    frame: pd.DataFrame,
    column: str,
    names: Mapping[int, str] | None = None,
    group: str = "休眠",
) -> pd.DataFrame:
    """Members of ``group`` (休眠) for each value of ``column`` (都道府県, 価格グループ), beside
    all members with that value; an id is shown as ``names[id]`` (``[names.price_groups]``)
    when named. Most of the group first; a blank value is 「（空欄）」."""
    _check(frame, column)
    _known(group)
    keys = _labels(frame[column], names)
    hit = (frame["顧客グループ"] == group).to_numpy(dtype=bool)
    out = pd.DataFrame({_COUNT: keys.value_counts(), group: keys[hit].value_counts()}).fillna(0)
    out = out.astype("int64")
    out["割合"] = _share(out[group], out[_COUNT])
    out.index.name = COLUMN_LABELS.get(column, column)  # 都道府県, not pref
    return out.sort_values([group, _COUNT], ascending=False, kind="stable")


def recency_curve(
    frame: pd.DataFrame,
    by: str | None = None,
    names: Mapping[int, str] | None = None,
    *,
    days: int = 730,
    step: int = 7,
) -> pd.DataFrame:
    """The share (%) of buyers whose last purchase was at most d days ago, for d = 0, step, …
    up to ``days``: one column for all buyers (「全体」), or one for each value of ``by`` (in
    the column's order, an id named by ``names``)."""
    _check(frame, *((by,) if by else ()))
    bought = frame[frame["最終購入からの日数"].notna()]
    ago = bought["最終購入からの日数"].to_numpy(dtype="int64")
    grid = np.arange(0, days + 1, step, dtype="int64")
    keys = _labels(bought[by], names) if by else pd.Series("全体", index=bought.index)
    columns: dict[str, np.ndarray[Any, Any]] = {}
    for key in pd.unique(keys.sort_values(key=lambda k: bought[by] if by else k)):
        mine = np.sort(ago[(keys == key).to_numpy(dtype=bool)])
        within = np.searchsorted(mine, grid, side="right")
        columns[str(key)] = np.round(within * 100 / max(len(mine), 1), 1)
    out = pd.DataFrame(columns, index=pd.Index(grid, name="最終購入からの日数"))
    return out


def segment_filter(group: str) -> dict[str, Any]:
    """The campaign filter for one 顧客グループ: what every face takes."""
    return {"顧客グループ": _known(group)}


def _known(group: str) -> str:
    if group not in GROUPS:
        raise InputError(
            f"unknown customer group {group!r}; one of {', '.join(GROUPS)}",
            ja=f"顧客グループ「{group}」はありません（{'、'.join(GROUPS)} のどれか）。",
        )
    return group


def send_guidance(
    frame: pd.DataFrame,
    flt: Mapping[str, Any],
    members: str | os.PathLike[str],
    orders: str | os.PathLike[str],
) -> str:
    """「このセグメントに送る」: the filter in words with its count (the filters module's own
    count), and the exact text to paste: the campaign file's lines, the JSON for papermill and
    ``--filter``, the wizard's controls and the ``bcartnb run`` lines."""
    _check(frame)
    count = len(apply_filter(frame, flt))
    members, orders = os.path.abspath(members), os.path.abspath(orders)
    campaign = tomli_w.dumps({"members": members, "orders": orders, "filter": dict(flt)})
    as_json = json.dumps(dict(flt), ensure_ascii=False)
    picks = "、".join(f"{k}「{v}」" for k, v in flt.items())
    return "\n".join(
        [
            f"このセグメントに送る: {describe_filter(flt)}（{count:,}人）",
            "",
            "■ キャンペーンファイル（campaign.toml）に書く行:",
            campaign.rstrip(),
            "",
            f"■ papermill の filter・bcartnb members の --filter: {as_json}",
            "",
            "■ ウィザード: 絞込オプションの「購入履歴」で " + picks + " を選んで「絞込」",
            f"  bcartnb wizard --members {_quoted(members)} --orders {_quoted(orders)}",
            "",
            "■ コマンドライン（--send なしは確認のみ。件数と見本のメールを確かめてから --send）:",
            f"  bcartnb members {_quoted(members)} --orders {_quoted(orders)} "
            f"--filter {_quoted(as_json)}",
            "  bcartnb run campaign.toml",
            "  bcartnb run campaign.toml --send",
        ]
    )


def _quoted(text: str) -> str:
    """``text`` as one shell word: a path with a space or a quote still pastes."""
    return shlex.quote(text)
