"""Step 1, 絞込オプション: controls built from the member columns, read back as a filter dict.

The step only turns what the marketer picked into the contract's filter (a plain dict, the
same one papermill and ``--filter`` take) and a keyword; the wizard hands both to the
package. Choices come from the members themselves, so a value that does not exist in the list
cannot be picked and every filter built here is well typed.
"""

from __future__ import annotations

import datetime as dt
from typing import Any, Final

import ipywidgets as widgets
import pandas as pd

from bcartnb.settings import IdNames

from ._common import fit, row
from .custom_filters import CustomFilters, name_ids
from .purchase_filters import PurchaseFilters

__all__ = ["MULTI_HINT", "NO_SEGMENT", "PREFECTURES", "FilterStep"]

#: Said under the lists: a list box needs Ctrl-click to pick a second item, which nobody guesses.
MULTI_HINT: Final = (
    "複数を選ぶときは Ctrl（Mac は ⌘）を押しながらクリック、続けて選ぶときは Shift を押しながら"
    "クリックします。何も選ばなければ、その項目では絞り込みません。"
)
#: The セグメント picker's first entry.
NO_SEGMENT: Final = "（セグメントを使わない）"

#: JIS order, the order every Japanese form lists them in.
_JIS: Final = (
    "北海道 青森県 岩手県 宮城県 秋田県 山形県 福島県 茨城県 栃木県 群馬県 埼玉県 千葉県 東京都 "
    "神奈川県 新潟県 富山県 石川県 福井県 山梨県 長野県 岐阜県 静岡県 愛知県 三重県 滋賀県 京都府 "
    "大阪府 兵庫県 奈良県 和歌山県 鳥取県 島根県 岡山県 広島県 山口県 徳島県 香川県 愛媛県 高知県 "
    "福岡県 佐賀県 長崎県 熊本県 大分県 宮崎県 鹿児島県 沖縄県"
)
PREFECTURES: Final[tuple[str, ...]] = tuple(_JIS.split())
_MM_CHOICES: Final = (("指定なし", ""), ("受け取る", "yes"), ("受け取らない", "no"))
_LABEL_STYLE: Final = {"description_width": "7em"}


def _values(members: pd.DataFrame, column: str) -> list[Any]:
    """The distinct non-blank values of a column, in a useful order."""
    if column not in members.columns:
        return []
    values = members[column].dropna().unique().tolist()
    if column == "pref":
        rank = {p: i for i, p in enumerate(PREFECTURES)}
        return sorted(values, key=lambda v: (rank.get(v, len(rank)), str(v)))
    if pd.api.types.is_integer_dtype(members[column].dtype):
        return sorted(int(v) for v in values)
    return sorted(values, key=str)


def _multi(members: pd.DataFrame, column: str, label: str, css: str) -> widgets.SelectMultiple:
    values = _values(members, column)
    w = widgets.SelectMultiple(
        options=[(str(v), v) for v in values],
        value=(),
        rows=min(6, max(2, len(values))),
        description=label,
        style=_LABEL_STYLE,
        disabled=not values,
    )
    w.add_class(css)
    return w


class FilterStep(widgets.VBox):  # type: ignore[misc]
    """The 絞込オプション box. ``filter`` and ``keyword`` are what the controls say now."""

    def __init__(self, members: pd.DataFrame, names: IdNames | None = None) -> None:
        self.pref = _multi(members, "pref", "都道府県", "bcartnb-filter-pref")
        self.price_group = _multi(
            members, "price_group_id", "価格グループ", "bcartnb-filter-price-group"
        )
        self.salesman = _multi(members, "salesman_id", "営業担当", "bcartnb-filter-salesman")
        name_ids(self.price_group, self.salesman, names or IdNames())
        self.custom = CustomFilters(members)  # カスタム項目: 業種, 会員ランク, …
        self.purchases = PurchaseFilters(members)  # 購入履歴, when the members have orders
        self.status = _multi(members, "status", "状態", "bcartnb-filter-status")
        self.mm_flag = widgets.Dropdown(
            options=list(_MM_CHOICES),
            value="",
            description="メール案内",
            style=_LABEL_STYLE,
            disabled="mm_flag" not in members.columns,
        )
        self.mm_flag.add_class("bcartnb-filter-mm-flag")
        has_dates = "created_at" in members.columns
        self.created_from = widgets.DatePicker(
            description="登録日", style=_LABEL_STYLE, disabled=not has_dates
        )
        self.created_from.add_class("bcartnb-filter-created-from")
        self.created_to = widgets.DatePicker(
            description="〜", style=_LABEL_STYLE, disabled=not has_dates
        )
        self.created_to.add_class("bcartnb-filter-created-to")
        self.text = widgets.Text(
            description="キーワード",
            placeholder="会社名・担当者・住所",
            style=_LABEL_STYLE,
        )
        self.text.add_class("bcartnb-filter-text")
        self.apply = widgets.Button(description="絞込", button_style="primary", icon="search")
        self.apply.add_class("bcartnb-filter-apply")
        self.reset = widgets.Button(description="クリア")
        self.reset.add_class("bcartnb-filter-reset")
        self.reset.on_click(lambda _b: self.clear())
        self.hint = widgets.HTML(f'<div style="color:#555;font-size:90%">{MULTI_HINT}</div>')
        self.hint.add_class("bcartnb-filter-hint")
        # セグメント: a saved filter, ANDed with the controls; and saving the current one
        self.segment = widgets.Dropdown(
            options=[NO_SEGMENT], value=NO_SEGMENT, description="セグメント", style=_LABEL_STYLE
        )
        self.segment.add_class("bcartnb-segment")
        self.segment_words = widgets.HTML("")
        self.segment_words.add_class("bcartnb-segment-words")
        self.segment_name = widgets.Text(
            description="保存する名前", placeholder="例: 東京の卸売業", style=_LABEL_STYLE
        )
        self.segment_name.add_class("bcartnb-segment-name")
        self.segment_overwrite = widgets.Checkbox(
            value=False, description="同じ名前なら上書き", indent=False
        )
        self.segment_overwrite.layout.width = "auto"
        self.segment_overwrite.add_class("bcartnb-segment-overwrite")
        self.save_segment = widgets.Button(
            description="この絞込条件をセグメントに保存", icon="save"
        )
        self.save_segment.add_class("bcartnb-save-segment")
        fit(self.apply, self.reset, self.save_segment)
        super().__init__(
            [
                widgets.HTML("<b>絞込オプション</b>"),
                row(self.segment, self.segment_words),
                row(self.pref, self.price_group),
                row(self.salesman, self.status),
                self.hint,
                row(self.mm_flag),
                row(self.created_from, self.created_to),
                self.custom,
                self.purchases,
                self.text,
                row(self.apply, self.reset),
                row(self.segment_name, self.segment_overwrite, self.save_segment),
            ]
        )

    @property
    def controls(self) -> list[widgets.Widget]:
        """Everything a long action freezes."""
        return [
            self.pref,
            self.price_group,
            self.salesman,
            self.status,
            self.mm_flag,
            self.created_from,
            self.created_to,
            self.text,
            self.apply,
            self.reset,
            self.segment,
            self.segment_name,
            self.segment_overwrite,
            self.save_segment,
            *self.custom.controls,
            *self.purchases.controls,
        ]

    @property
    def filter(self) -> dict[str, Any]:
        """The contract's filter dict for the current controls (the keyword is not in it)."""
        out: dict[str, Any] = {}
        for key, w in (
            ("pref", self.pref),
            ("price_group_id", self.price_group),
            ("salesman_id", self.salesman),
            ("status", self.status),
        ):
            if w.value:
                out[key] = list(w.value)
        if self.mm_flag.value:
            out["mm_flag"] = self.mm_flag.value == "yes"
        dates: dict[str, str] = {}
        for op, w in (("from", self.created_from), ("to", self.created_to)):
            value = w.value
            if isinstance(value, dt.date):
                dates[op] = value.isoformat()
        if dates:
            out["created_at"] = dates
        return {**out, **self.custom.filter, **self.purchases.filter}

    @property
    def segment_choice(self) -> str | None:
        """The picked segment's name, or None."""
        value = self.segment.value
        return None if not value or value == NO_SEGMENT else str(value)

    def set_segments(self, names: list[str], current: str | None = None) -> None:
        """Refresh the picker (another notebook may have saved one); keep the pick if it stays."""
        keep = current if current in names else self.segment_choice
        self.segment.options = [NO_SEGMENT, *names]
        self.segment.value = keep if keep in names else NO_SEGMENT

    @property
    def keyword(self) -> str:
        return str(self.text.value).strip()

    def clear(self) -> None:
        """クリア: every control back to "no condition"."""
        for w in (self.pref, self.price_group, self.salesman, self.status):
            w.value = ()
        self.mm_flag.value = ""
        self.created_from.value = None
        self.created_to.value = None
        self.text.value = ""
        self.segment.value = NO_SEGMENT
        self.custom.clear()
        self.purchases.clear()
