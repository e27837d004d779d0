"""The report's tables: a run's parameters, counts, quota, and the members it could not mail.

Each is a :class:`pandas.DataFrame` in the shop's words (B-Cart's own labels), so a test
reads its values and :func:`bcartnb.report.blocks.table` shows it escaped. A table of
members or of a server's replies is masked here, where it is made: nothing that leaves this
module holds a whole address, and nothing from the settings but what the report names.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import pandas as pd

from bcartnb.audience import REASON_LABELS, REASONS
from bcartnb.exceptions import BcartnbError
from bcartnb.filters import describe_filter
from bcartnb.members import COLUMN_LABELS
from bcartnb.privacy import mask_address, mask_text
from bcartnb.report.blocks import is_blank

__all__ = [
    "FAILURE_LABELS",
    "MEMBERS_SHOWN",
    "counts_table",
    "failure_label",
    "failures_table",
    "mask_frame",
    "members_table",
    "parameters_table",
    "quota_table",
    "reasons_table",
]

#: How many unsendable members the report lists (it says how many more there are).
MEMBERS_SHOWN = 500
_SECRET_KEY = re.compile(r"pass|secret|token|key", re.IGNORECASE)
_PARAM_LABELS = {
    "members": "会員ファイル",
    "orders": "受注ファイル",
    "orders_snapshot": "使った受注データ",
    "segment": "セグメント",
    "filter": "絞込オプション",
    "checked": "送信対象",
    "template": "テンプレート",
    "subject": "メール件名",
    "body": "メール本文",
    "html": "HTMLメールで送信",
    "insert_signature": "設定している署名を挿入",
    "opt_in_only": "メール案内を受け取る会員のみ",
    "encoding": "文字コード",
    "send": "送信する",
    "scheduled_at": "予定時刻",
    "repeat": "同じメールを再送する",
    "report_html": "レポートの書き出し先",
    "settings_path": "設定ファイル",
}
_ENCODING_WORDS = {"utf-8": "UTF-8", "iso-2022-jp": "ISO-2022-JP（JIS）"}
#: What an unset parameter means, where "（指定なし）" would leave the reader guessing.
_UNSET_WORDS = {
    "segment": "使わない",
    "template": "使わない（件名と本文を指定）",
    "subject": "テンプレートの件名",
    "body": "テンプレートの本文",
    "html": "テンプレートの設定どおり",
}


def mask_frame(frame: pd.DataFrame) -> pd.DataFrame:
    """A copy with ``email`` and ``email_cc`` masked; blanks stay blank."""
    out = frame.copy()
    for column in ("email", "email_cc"):
        if column in out.columns:
            out[column] = [
                mask_address(v) if isinstance(v, str) and v.strip() else v for v in out[column]
            ]
    return out


def _shown(key: str, value: Any) -> str:
    """One parameter's value in words: no JSON, no Python list, addresses masked."""
    if key == "filter" and isinstance(value, Mapping):
        try:
            return mask_text(describe_filter(value))
        except BcartnbError:  # not a filter that could have run: its items as written
            pass
    if key == "orders_snapshot" and isinstance(value, Mapping):
        return _orders_used(value)
    if key == "checked" and isinstance(value, list | tuple):
        if not value:
            return "検索結果すべてに送信"
        ids = "、".join(str(v) for v in value)
        return f"チェックした会員に送信（{len(value):,} 件: 会員ID {ids}）"
    if key == "encoding" and isinstance(value, str):
        return _ENCODING_WORDS.get(value.lower(), value)
    if value is None or value == "":
        return _UNSET_WORDS.get(key, "（指定なし）")
    if isinstance(value, bool):
        return "はい" if value else "いいえ"
    if isinstance(value, Mapping):
        return "、".join(f"{k}: {_shown(str(k), v)}" for k, v in value.items()) or "（なし）"
    if isinstance(value, list | tuple):
        return "、".join(_shown(key, v) for v in value) or "（なし）"
    return mask_text(str(value))


def _orders_used(record: Mapping[str, Any]) -> str:
    """Which orders the purchase conditions were decided on, so a reviewer can tell the file
    (and whether it changed since: its SHA-256) and how fresh it was."""
    when = record.get("pulled_at")
    said = f"{when} にBカートから取得" if when else f"{record.get('modified_at')} 時点のファイル"
    return f"{record.get('path')}（{said}、SHA-256 {str(record.get('sha256', ''))[:16]}…）"


def parameters_table(params: Mapping[str, Any]) -> pd.DataFrame:
    """The run's parameters in the shop's words (パラメータ / 値): B-Cart's labels, values
    in words, secrets left out by name, addresses masked."""
    rows = [
        (_PARAM_LABELS.get(key, key), _shown(key, value))
        for key, value in params.items()
        if not _SECRET_KEY.search(key)
    ]
    return pd.DataFrame(rows, columns=["パラメータ", "値"]).set_index("パラメータ")


def counts_table(summary: Mapping[str, Any]) -> pd.DataFrame:
    """対象 / 送信件数 / 送信できない件数 / 送信済み / 失敗, from a run summary."""
    rows = [
        ("対象の会員", summary["selected"]),
        ("送信件数", summary["sendable"]),
        ("送信できない件数", summary["unsendable"]),
        ("送信済み", summary.get("sent", 0)),
        ("失敗", summary.get("failed", 0)),
    ]
    if summary.get("uncertain"):
        rows.append(("送信結果が不明", summary["uncertain"]))
    return pd.DataFrame(rows, columns=["項目", "件数"]).set_index("項目")


def reasons_table(reasons: Mapping[str, int]) -> pd.DataFrame:
    """送信できない理由 / 件数 in decision order, zeros included (as the audience's table)."""
    return pd.DataFrame(
        {"理由": [REASON_LABELS[r] for r in REASONS], "件数": [reasons.get(r, 0) for r in REASONS]}
    ).set_index("理由")


def quota_table(quota: Mapping[str, Any]) -> pd.DataFrame:
    """プラン, 月, 上限, 配信数 before and after (a projection in a dry run)."""
    cap = quota.get("cap")
    rows = [
        ("プラン", quota.get("plan")),
        ("対象月", quota.get("month")),
        ("メール配信上限数（月）", "上限なし" if cap is None else f"{cap:,}"),
        ("今月の配信数（送信前）", f"{quota.get('used_before', 0):,}"),
        ("今月の配信数（送信後）", f"{quota.get('used_after', 0):,}"),
    ]
    if cap is not None:
        rows.append(("残り（送信後）", f"{max(cap - quota.get('used_after', 0), 0):,}"))
    return pd.DataFrame(rows, columns=["項目", "値"]).set_index("項目")


#: What an SMTP reply code means to a shop (the reply itself is shown beside it, masked).
FAILURE_LABELS: Mapping[int, str] = {
    550: "宛先が存在しないか、受信を拒否されました",
    551: "宛先が存在しません（受信側が別の宛先を案内しました）",
    552: "受信側の容量を超えました",
    553: "宛先の形式が受信側に拒否されました",
    554: "受信側に拒否されました",
}


def failure_label(code: int | None) -> str:
    """送信に失敗した理由 in the shop's words, from the server's reply code."""
    if code is None:
        return "受信側に拒否されました"
    return FAILURE_LABELS.get(code, f"受信側に拒否されました（恒久的なエラー {code}）")


def members_table(frame: pd.DataFrame, limit: int = MEMBERS_SHOWN) -> pd.DataFrame:
    """The unsendable as a reviewer reads them: 会員ID, 会社名, 担当者, address (masked), 理由."""
    masked = mask_frame(frame.head(limit))
    out = pd.DataFrame(index=pd.Index(masked["id"].tolist(), name="会員ID"))
    for column in ("comp_name", "tanto_last_name", "tanto_first_name", "email"):
        if column in masked.columns:
            out[COLUMN_LABELS.get(column, column)] = [
                "" if is_blank(v) else mask_text(str(v)) for v in masked[column]
            ]
    out["送信できない理由"] = [REASON_LABELS.get(str(r), str(r)) for r in masked["reason"]]
    return out


def failures_table(failures: list[tuple[int, str, int | None, str]]) -> pd.DataFrame:
    """The refused members: the reply code in words beside the server's reply, masked
    (a reply often quotes the address it refused)."""
    rows = [
        (mid, mask_address(addr), failure_label(code), mask_text(msg))
        for mid, addr, code, msg in failures
    ]
    return pd.DataFrame(
        rows, columns=["会員ID", "メールアドレス", "理由", "受信側の応答"]
    ).set_index("会員ID")
