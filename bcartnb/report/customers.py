"""What the customers notebook (``notebooks/customers.ipynb``) shows: the tables of
:mod:`bcartnb.orders.analysis` as charts and escaped tables, and the counts it records.

The notebook stays a parameters cell and calls: reading (:func:`customers_frame`, the one
join of :func:`bcartnb.campaign.members_with_orders`), counting (``orders.analysis``) and
drawing (here). Charts take the report's Japanese font (:func:`~bcartnb.report.charts.japanese`)
with mathtext off: a 都道府県 or a shop's price-group name holding ``$`` is text, not a formula.
The counts are recorded under :data:`CUSTOMERS_MIMETYPE` so a test (or a scheduler) reads
them back with :func:`read_counts` instead of scraping the tables.
"""

from __future__ import annotations

import datetime as dt
import json
import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final
from zoneinfo import ZoneInfo

import pandas as pd

from bcartnb.campaign import members_with_orders
from bcartnb.exceptions import BcartnbError, InputError
from bcartnb.members import TOKYO, read_members
from bcartnb.members.columns import day_parts
from bcartnb.report.blocks import block, display, escape, html_table, image, show
from bcartnb.report.charts import japanese, png
from bcartnb.report.notebook import demo_path
from bcartnb.settings import Settings

if TYPE_CHECKING:
    from matplotlib.axes import Axes

__all__ = [
    "CUSTOMERS_MIMETYPE",
    "bar_chart",
    "customers_frame",
    "read_counts",
    "recency_chart",
    "record_counts",
    "rf_chart",
    "show_table",
]

#: The mimetype of the counts the notebook records (:func:`record_counts`).
CUSTOMERS_MIMETYPE: Final = "application/vnd.bcartnb.customers+json"
_BLUE: Final = "#1a4d8f"


def customers_frame(
    members: str | os.PathLike[str] | None,
    orders: str | os.PathLike[str] | None,
    settings: Settings,
    as_of: str | dt.date | None = None,
) -> pd.DataFrame:
    """The members with their purchase columns as of ``as_of`` (a day; None: today in Tokyo).

    ``members`` and ``orders`` None: the demo's files (``data/``), so the notebook runs as is.
    """
    members = members if members is not None else demo_path("demo_members.csv")
    orders = orders if orders is not None else demo_path("demo_orders.csv")
    now = None
    if as_of is not None:
        day = as_of if isinstance(as_of, dt.date) else _day(as_of)
        now = dt.datetime(day.year, day.month, day.day, 12, tzinfo=ZoneInfo(TOKYO))
    return members_with_orders(read_members(members), orders, settings, now=now)


def _day(text: str) -> dt.date:
    parts = day_parts(text) if isinstance(text, str) else None
    try:
        if parts is not None:
            return dt.date(*parts)
    except ValueError:
        pass
    raise InputError(
        f"as_of {text!r} is not a day (YYYY-MM-DD)",
        ja=f"as_of は 2026-12-01 のように日付で書いてください（{text!r} は使えません）。",
    )


@contextmanager
def _drawing() -> Iterator[None]:
    import matplotlib

    with japanese(), matplotlib.rc_context({"text.parse_math": False}):
        yield


def _figure(width: float, height: float) -> tuple[Any, Axes]:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height))
    return fig, fig.add_subplot()


def bar_chart(counts: pd.Series, title: str, unit: str = "人") -> bytes:
    """One bar a label, in the series' order (top to bottom)."""
    with _drawing():
        fig, ax = _figure(7, max(2.0, 0.3 * len(counts) + 1.0))
        if len(counts):
            labels = [str(i) for i in counts.index][::-1]
            ax.barh(labels, counts.to_list()[::-1], color=_BLUE)
        else:
            ax.text(0.5, 0.5, "該当なし", ha="center", va="center")
        ax.set_title(title)
        ax.set_xlabel(unit)
        return png(fig)


def rf_chart(rfm: pd.DataFrame, title: str = "R・F・M ランクの分布（購入のある会員）") -> bytes:
    """R, F and M side by side: buyers at each rank 1–5 (``orders.analysis.rfm_counts``)."""
    with _drawing():
        fig, ax = _figure(7, 3.2)
        width = 0.27
        for k, (name, color) in enumerate(
            zip(rfm.columns, ("#1a4d8f", "#e8710a", "#2e8b57"), strict=True)
        ):
            ax.bar(
                [r + (k - 1) * width for r in rfm.index], rfm[name], width, label=name, color=color
            )
        ax.set_xticks(list(rfm.index), [f"ランク{r}" for r in rfm.index])
        ax.set_ylabel("人")
        ax.set_title(title)
        ax.legend(fontsize=8)
        return png(fig)


def recency_chart(curve: pd.DataFrame, title: str) -> bytes:
    """Each column of :func:`~bcartnb.orders.analysis.recency_curve` as a line."""
    with _drawing():
        fig, ax = _figure(7, 3.4)
        for name in curve.columns:
            ax.plot(curve.index, curve[name], label=str(name))
        ax.set_xlabel("最終購入からの日数")
        ax.set_ylabel("その日数以内に購入した会員（%）")
        ax.set_ylim(0, 100)
        ax.set_title(title)
        if len(curve.columns) > 1:
            ax.legend(loc="lower right", fontsize=8)
        return png(fig)


def show_table(frame: pd.DataFrame, title: str, chart: bytes | None = None) -> None:
    """A heading, the table (escaped), and its chart when given: one output each."""
    plain = f"{title}\n{frame.to_string()}"
    show(block(f"<h3>{escape(title)}</h3>{html_table(frame)}", plain))
    if chart is not None:
        show(image(chart, title))


def record_counts(counts: Mapping[str, Any]) -> dict[str, Any]:
    """Record the notebook's counts (JSON-safe: keys and numbers) for :func:`read_counts`."""
    data = json.loads(json.dumps(counts, ensure_ascii=False, default=int))
    display(
        {CUSTOMERS_MIMETYPE: data, "text/plain": json.dumps(data, ensure_ascii=False)}, raw=True
    )
    return dict(data)


def read_counts(nb_path: str | os.PathLike[str]) -> dict[str, Any]:
    """The counts an executed customers notebook recorded (the last ones)."""
    path = Path(nb_path)
    try:
        nb = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as err:
        raise BcartnbError(
            f"{path}: not a readable notebook ({err})",
            ja=f"実行済みのノートブック {path} を読めません。",
        ) from err
    found = [
        out["data"][CUSTOMERS_MIMETYPE]
        for cell in nb.get("cells", [])
        for out in cell.get("outputs", [])
        if CUSTOMERS_MIMETYPE in out.get("data", {})
    ]
    if not found:
        raise BcartnbError(
            f"{path}: no customer counts recorded (did the notebook finish?)",
            ja="ノートブックに集計が記録されていません（最後まで実行されましたか）。",
        )
    return dict(found[-1])
