"""The report's charts: how close the month is to B-Cart's cap, and who a campaign mails.

Charts use the IPAexGothic font bundled by ``matplotlib-fontja`` (registered with matplotlib,
without that package's import-time change of the global font): machines seldom have a
Japanese font, and without one every 都道府県 label would be a row of boxes and a warning.
:func:`japanese` and :func:`png` are the two steps every chart of the package takes (the
list-hygiene report's too), and a label that comes from the shop's data (a subject, a
member's value) goes through :func:`chart_text` and :func:`text_ticks`, so it is drawn as
written. A chart is a PNG's bytes; :func:`bcartnb.report.blocks.image` shows it.
"""

from __future__ import annotations

import functools
import importlib.util
import io
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import pandas as pd

from bcartnb.exceptions import BcartnbError
from bcartnb.members import COLUMN_LABELS
from bcartnb.report.notes import id_time

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

__all__ = ["breakdown_chart", "chart_text", "japanese", "png", "text_ticks", "usage_chart"]

_FONT_FAMILY = "IPAexGothic"


def _font_file() -> Path | None:
    # find_spec does not import matplotlib_fontja, whose import changes the global rc.
    spec = importlib.util.find_spec("matplotlib_fontja")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(next(iter(spec.submodule_search_locations))) / "fonts" / "ipaexg.ttf"
    return path if path.is_file() else None


@contextmanager
def japanese() -> Iterator[None]:
    """Draw with the bundled Japanese font, for this chart only (the global rc stays)."""
    import matplotlib
    from matplotlib import font_manager

    font = _font_file()
    if font is None:  # pragma: no cover - the dependency ships the font
        raise BcartnbError(
            "report: the Japanese chart font (matplotlib-fontja) is missing",
            ja="グラフの日本語フォント（matplotlib-fontja）がインストールされていません。",
        )
    names = {f.name for f in font_manager.fontManager.ttflist}
    if _FONT_FAMILY not in names:
        font_manager.fontManager.addfont(str(font))
    with matplotlib.rc_context({"font.family": [_FONT_FAMILY, "DejaVu Sans"]}):
        yield


def png(fig: Figure) -> bytes:
    """A figure as PNG bytes: what a notebook output and the exported page both hold."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100, bbox_inches="tight")
    return buf.getvalue()


def usage_chart(
    usage: Mapping[str, int],
    cap: int | None,
    month: str,
    current: str | None = None,
    labels: Mapping[str, str] | None = None,
) -> bytes:
    """This month's sends per campaign (bars, the current one highlighted), the running
    total (line) and the cap (dashed): how close the shop is to B-Cart's monthly limit.

    A bar is labelled by its campaign's date and subject (``labels``; the id's time when a
    campaign has no label), which is how a shop remembers its mailings.
    """
    from matplotlib.figure import Figure

    ids = list(usage)
    names = [_bar_label(i, (labels or {}).get(i)) for i in ids]
    counts = [usage[i] for i in ids]
    with japanese():
        fig = Figure(figsize=(7, 3.2))
        ax = fig.add_subplot()
        if ids:
            colors = ["#e8710a" if i == current else "#1a4d8f" for i in ids]
            ax.bar(
                range(len(ids)), counts, width=0.6, color=colors, label="キャンペーンごとの配信数"
            )
            total = pd.Series(counts).cumsum().tolist()
            ax.plot(range(len(ids)), total, marker="o", color="#555555", label="累計")
            text_ticks(ax, names, rotation=30, ha="right", fontsize=8)
            ax.set_xlim(-0.75, max(len(ids), 4) - 0.25)
        else:
            ax.text(0.5, 0.5, "今月の配信はまだありません", ha="center", va="center")
            ax.set_xticks([])
        if cap is not None:
            ax.axhline(cap, color="#c0392b", linestyle="--", label=f"上限 {cap:,} 通")
        ax.set_title(f"{month} の配信数")
        ax.set_ylabel("通")
        ax.set_ylim(bottom=0)
        if ids or cap is not None:
            ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8)
        return png(fig)


@functools.cache
def _drawable() -> frozenset[int]:
    """The characters the chart font has: any other one in a subject (an emoji, a control
    character) is drawn as □ rather than warned about in the middle of the report."""
    from matplotlib.ft2font import FT2Font

    font = _font_file()
    return frozenset(FT2Font(str(font)).get_charmap()) if font else frozenset()


def chart_text(text: str, limit: int) -> str:
    """Text from the shop's data as a chart draws it: a character the font lacks (an emoji)
    as □, a control character as a space, at most ``limit`` characters (… where it is cut),
    so a long subject cannot squeeze the chart nor a glyph be warned about mid-report."""
    drawable = _drawable()
    text = "".join(
        ch if ord(ch) in drawable else ("□" if ch.isprintable() else " ") for ch in text
    ).strip()
    return text if len(text) <= limit else text[: limit - 1] + "…"


def text_ticks(
    ax: Axes, labels: Sequence[str], *, axis: Literal["x", "y"] = "x", **style: Any
) -> None:
    """``labels`` at 0, 1, 2 … of ``axis``, drawn as written: never mathtext, where
    ``$100 off $`` would be set as math and ``$\\frac{$`` fail the whole chart."""
    if axis == "x":
        ax.set_xticks(range(len(labels)), labels, **style)
        ticks = ax.get_xticklabels()
    else:
        ax.set_yticks(range(len(labels)), labels, **style)
        ticks = ax.get_yticklabels()
    for tick in ticks:
        tick.set_parse_math(False)


def _bar_label(campaign_id: str, label: str | None) -> str:
    """One bar's label: its campaign's date and subject, else the id's time."""
    label = chart_text(label or "", 24)
    if not label:
        when = id_time(campaign_id)
        label = f"{when:%m/%d %H:%M}" if when else campaign_id
    return label if len(label) <= 24 else label[:23] + "…"


def breakdown_chart(members: pd.DataFrame, column: str, title: str | None = None) -> bytes:
    """送信件数 by one column (都道府県, 価格グループ), most first; blanks as （空欄）."""
    from matplotlib.figure import Figure

    label = COLUMN_LABELS.get(column, column)
    if column in members.columns:
        values = members[column].astype("string").fillna("（空欄）")
        counts = values.value_counts(sort=True)
    else:
        counts = pd.Series(dtype="int64")
    counts = counts.head(20)
    with japanese():
        fig = Figure(figsize=(7, max(2.0, 0.28 * len(counts) + 1.0)))
        ax = fig.add_subplot()
        if len(counts):
            ax.barh(range(len(counts)), counts.to_list()[::-1], color="#1a4d8f")
            text_ticks(ax, [chart_text(str(i), 24) for i in counts.index][::-1], axis="y")
        else:
            ax.text(0.5, 0.5, "該当なし", ha="center", va="center")
        ax.set_title(title or f"送信件数（{label}別）")
        ax.set_xlabel("件数")
        return png(fig)
