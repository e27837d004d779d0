"""セグメント on the first step: pick a saved segment, read it in words, save the current 絞込.

A face on :class:`~bcartnb.segments.SegmentStore`, the file ``bcartnb segments`` and the
campaign file's ``segment`` key read, so a segment saved here is the one the CLI sends to.
A picked segment is ANDed with the controls by :func:`~bcartnb.segments.combine_filters`, the
rule every face uses (a column in both is an error, not a silent override).
"""

from __future__ import annotations

import html
from typing import Any, Protocol

import ipywidgets as widgets
import pandas as pd

from bcartnb.segments import SegmentStore, combine_filters

from ._common import Status
from .filter_step import FilterStep

__all__ = ["SegmentTools"]


class _Wizard(Protocol):
    """What the tools read of the wizard (the filter step is rebuilt when a file is loaded)."""

    segments: SegmentStore
    status: Status
    filter_step: FilterStep
    members: pd.DataFrame

    @property
    def controls(self) -> list[widgets.Widget]: ...


class SegmentTools:
    """The segment half of 絞込オプション, wired to the wizard's current filter step."""

    def __init__(self, wizard: _Wizard) -> None:
        self._w = wizard

    def wire(self, step: FilterStep) -> None:
        """Connect a (new) filter step's segment controls."""
        step.save_segment.on_click(lambda _b: self.save())
        step.segment.observe(lambda _c: self.describe(), names="value")

    def refresh(self, current: str | None = None) -> None:
        """List the saved segments again (keeping ``current`` picked when it still exists)."""
        w = self._w
        names = w.status.run(w.segments.names, busy="セグメントを読み込んでいます…")
        if names is not None:
            w.filter_step.set_segments(names, current)

    def describe(self) -> None:
        """The picked segment's conditions in words, under the picker."""
        w, step = self._w, self._w.filter_step
        name = step.segment_choice
        if name is None:
            step.segment_words.value = ""
            return
        words = w.status.run(lambda: w.segments.describe(name))
        step.segment_words.value = "" if words is None else f"<i>{html.escape(words)}</i>"

    def current_filter(self) -> dict[str, Any]:
        """The controls' filter, ANDed with the picked segment's (a column in both: an error)."""
        w = self._w
        flt = w.filter_step.filter
        name = w.filter_step.segment_choice
        if name is None:
            return flt
        return combine_filters(w.segments.get(name), flt, w.members.columns, name)

    def save(self) -> None:
        """この絞込条件をセグメントに保存: the current filter (segment included) under a name."""
        w, step = self._w, self._w.filter_step
        name = step.segment_name.value
        if step.keyword:
            w.status.error(
                "キーワードはセグメントに保存できません。キーワードを消して、"
                "絞込オプションだけで条件を作ってください。"
            )
            return

        def save() -> str:
            stored = w.segments.save(
                name, self.current_filter(), overwrite=bool(step.segment_overwrite.value)
            )
            # listed, not picked: picking it would AND it with the very controls it came from
            step.set_segments(w.segments.names())
            return stored

        stored: str | None = w.status.run(save, w.controls, busy="セグメントを保存しています…")
        if stored is not None:
            step.segment_name.value = ""
            w.status.info(f"セグメント「{stored}」を保存しました（{w.segments.path}）。")
