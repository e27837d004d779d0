"""Every chart draws the shop's text as written: a subject or a member's value holding ``$``
is never mathtext, and nothing it holds makes a chart raise or warn (filterwarnings=error).

One rule for every chart (bcartnb/report/charts.py: ``chart_text`` and ``text_ticks``): the
campaign report's usage and breakdown charts and the list-hygiene report's bounce chart.
"""

from __future__ import annotations

import pandas as pd
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from matplotlib.figure import Figure

from bcartnb.hygiene.report import bounce_chart
from bcartnb.report.charts import breakdown_chart, chart_text, japanese, text_ticks, usage_chart

PNG = b"\x89PNG\r\n\x1a\n"
#: mathtext would set the first as math and fail the chart on the others
MATH = ["$100 off $", "$\\frac{$", "$x^$", "\\$ $$ $\\alpha", "$\\undefined$"]
TEXT = st.one_of(
    st.sampled_from(MATH),
    st.text(
        alphabet=st.one_of(
            st.sampled_from(list("$\\^_{}%#&~ 　冬セール【】🎄\x00\x1b\r\n\t")),
            st.characters(codec="utf-8"),
        ),
        max_size=40,
    ),
)


def rates(subjects: list[str]) -> pd.DataFrame:
    n = len(subjects)
    return pd.DataFrame(
        {
            "campaign_id": [f"20261201-0900{i:02d}-aaaaaa" for i in range(n)],
            "date": ["2026-12-01"] * n,
            "subject": subjects,
            "sent": [10] * n,
            "bounces": [1] * n,
            "complaints": [0] * n,
            "rate": [0.1] * n,
        }
    )


def test_the_bounce_chart_draws_a_dollar_subject() -> None:
    for subject in MATH:
        assert bounce_chart(rates([subject, "通常の件名"]), "2026-12").startswith(PNG)


def test_the_breakdown_chart_draws_a_dollar_value() -> None:
    members = pd.DataFrame({"pref": [*MATH, "東京都", "🎄"]})
    assert breakdown_chart(members, "pref").startswith(PNG)


def test_text_ticks_are_drawn_as_written_after_the_figure_is_drawn() -> None:
    """Drawing keeps the labels plain: each is the subject itself, with mathtext off."""
    with japanese():
        fig = Figure()
        ax = fig.add_subplot()
        ax.bar(range(len(MATH)), [1] * len(MATH))
        text_ticks(ax, MATH)
        fig.canvas.draw()  # mathtext would raise here on $\frac{$
        ticks = ax.get_xticklabels()
        assert [t.get_text() for t in ticks] == MATH
        assert not any(t.get_parse_math() for t in ticks)


def test_chart_text_keeps_dollars_and_marks_what_the_font_lacks() -> None:
    assert chart_text("$100 off $", 19) == "$100 off $"
    assert chart_text("冬🎄\x1bセール", 19) == "冬□ セール"
    assert chart_text("あ" * 30, 19) == "あ" * 18 + "…"


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(TEXT, min_size=1, max_size=3))
def test_no_subject_makes_a_chart_raise(subjects: list[str]) -> None:
    assert bounce_chart(rates(subjects), "2026-12").startswith(PNG)
    ids = {f"20261201-0900{i:02d}-aaaaaa": 3 for i in range(len(subjects))}
    labels = dict(zip(ids, subjects, strict=True))
    assert usage_chart(ids, 100, "2026-12", None, labels).startswith(PNG)
    assert breakdown_chart(pd.DataFrame({"pref": subjects}), "pref").startswith(PNG)
