"""The campaign report: the document a reviewer opens after a campaign.

The batch notebook (``notebooks/campaign.ipynb``) is a parameters cell and calls into this
module, so the report looks the same whoever runs it and is tested here rather than in a
notebook. One :class:`CampaignReport` holds what the document says, gathered either from the
run that just happened (:func:`from_run`, the notebook's :func:`show_report`) or afterwards
from the ledger (:func:`from_ledger`, ``bcartnb report ID``); :func:`report_blocks` turns it
into the same outputs both ways, and :func:`export_html` makes the HTML page a reviewer
opens: the notebook's outputs without its code, prompts, Markdown or checks, through the
small nbconvert template in ``report_template/`` (JupyterLab's page, CSS inline, and none of
the scripts it would load from a CDN). The executed notebook stays for whoever wants the code.

What the ledger does not hold (a notebook run's scheduled time, its From and subject, the
quota it saw) is kept in a JSON file per campaign beside the ledger file
(:func:`notes_path`); the ledger's schema is left alone. The rules for every function:

* addresses are masked (``t***@example.co.jp``, :func:`mask_address`): a report is passed
  around, a member list is not;
* nothing from the settings but the plan, the sender and the server's host is shown, so
  the SMTP password (read from the environment only) cannot end up in an executed notebook;
* every value that comes from a member, a template, a parameter, a setting or a server's
  reply is shown as text, never as markup: the report is HTML built here with
  :func:`html.escape` (no Markdown, whose own syntax would turn ``[x](javascript:...)`` into
  a link), because a 会社名 like ``<script>...</script>株式会社`` is just a member's data and
  the exported report is opened in a browser. The HTML part of the sample mail is the one
  place where markup is meant: it is shown in a sandboxed iframe (:func:`mail_frame`) with
  no scripts and no requests to other hosts.

The notebook records its summary as a display output with the :data:`SUMMARY_MIMETYPE`
mimetype (scrapbook's ``glue`` in one line, without the dependency); a caller reads it back
from the output notebook with :func:`read_summary`.

Charts use the IPAexGothic font bundled by ``matplotlib-fontja`` (registered with matplotlib,
without that package's import-time change of the global font): machines seldom have a
Japanese font, and without one every 都道府県 label would be a row of boxes and a warning.
"""

from __future__ import annotations

import base64
import functools
import html
import importlib.util
import io
import json
import os
import re
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from bcartnb.audience import REASON_LABELS, REASONS
from bcartnb.exceptions import BcartnbError, CampaignStateError, InputError
from bcartnb.files import write_atomically
from bcartnb.filters import describe_filter
from bcartnb.members import COLUMN_LABELS
from bcartnb.privacy import mask_address, mask_text
from bcartnb.quota import TOKYO, month_of, resolve_plan
from bcartnb.settings import require_ledger

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from bcartnb.campaign import CampaignPlan, DeliverySummary
    from bcartnb.ledger import Ledger
    from bcartnb.settings import Settings

__all__ = [
    "DEMO_TEMPLATE",
    "FAILURE_LABELS",
    "HIDDEN_CELL_TAGS",
    "SUMMARY_MIMETYPE",
    "Block",
    "CampaignReport",
    "breakdown_chart",
    "counts_table",
    "data_dir",
    "demo_path",
    "export_html",
    "failure_label",
    "from_ledger",
    "from_run",
    "html_table",
    "mail_frame",
    "mask_address",
    "mask_frame",
    "mask_text",
    "notebook_params",
    "notes_path",
    "outcome_words",
    "parameters_table",
    "quota_table",
    "read_summary",
    "reasons_table",
    "record_summary",
    "report_blocks",
    "resolve_members",
    "sample_mail",
    "sample_mail_html",
    "show_mail",
    "show_report",
    "usage_chart",
    "write_report",
]

SUMMARY_MIMETYPE = "application/vnd.bcartnb.summary+json"
_FONT_FAMILY = "IPAexGothic"
_SECRET_KEY = re.compile(r"pass|secret|token|key", re.IGNORECASE)
# MathJax (JupyterLab, nbconvert's template) skips elements with these classes: a `$…$` in a
# member's value stays text instead of being typeset (and \href in TeX becoming a link).
_NO_MATH = "tex2jax_ignore mathjax_ignore"
# The sample mail's HTML is rendered with nothing that reaches out: no scripts (the iframe
# sandbox), and no images, fonts or styles from other hosts (a tracking pixel would tell the
# sender who reads the report, and when).
_MAIL_CSP = (
    "default-src 'none'; img-src data:; style-src 'unsafe-inline'; font-src data:; "
    "form-action 'none'; base-uri 'none'"
)
_PARAM_LABELS = {
    "members": "会員ファイル",
    "filter": "絞込オプション",
    "checked": "チェックした会員",
    "template": "テンプレート",
    "subject": "メール件名",
    "body": "メール本文",
    "html": "HTMLメールで送信",
    "insert_signature": "設定している署名を挿入",
    "opt_in_only": "メール案内を受け取る会員のみ",
    "encoding": "文字コード",
    "send": "送信する",
    "scheduled_at": "予定時刻",
}


# --- where the demo data is --------------------------------------------------------------


def data_dir() -> Path:
    """The repository's ``data/`` folder, found from the package, so any cwd works."""
    return Path(__file__).resolve().parent.parent / "data"


def demo_path(*parts: str) -> Path:
    """A path inside ``data/`` (``demo_path("demo_members.csv")``)."""
    return data_dir().joinpath(*parts)


#: The template the demo members are mailed with when the notebook is given neither a
#: template nor a subject and body (its default run, and nbval's).
DEMO_TEMPLATE = "テキストニュースレター"


def notebook_params(**params: Any) -> dict[str, Any]:
    """The papermill notebook's parameters as campaign keys.

    ``members=None`` means the demo members, and only then does a missing template default to
    the demo's (:data:`DEMO_TEMPLATE`): a shop's own run with ``subject`` and ``body`` uses no
    template, and one without them is told to give a template or both.
    """
    out = dict(params)
    demo = out.get("members") in (None, "")
    out["members"] = str(resolve_members(out.get("members")))
    if demo and not out.get("template") and out.get("subject") is None and out.get("body") is None:
        out["template"] = DEMO_TEMPLATE
    return out


def resolve_members(members: str | os.PathLike[str] | None) -> Path:
    """The notebook's ``members`` parameter as a path: None means the demo members.

    papermill runs the kernel in whatever directory it was given, so a relative path is
    taken from the current directory and an absolute one as is; give absolute paths.
    """
    if members is None or members == "":
        return demo_path("demo_members.csv")
    return Path(members).expanduser().resolve()


# --- masking -----------------------------------------------------------------------------


def mask_frame(frame: pd.DataFrame) -> pd.DataFrame:
    """A copy with ``email`` and ``email_cc`` masked; blanks stay blank."""
    out = frame.copy()
    for column in ("email", "email_cc"):
        if column in out.columns:
            out[column] = [
                mask_address(v) if isinstance(v, str) and v.strip() else v for v in out[column]
            ]
    return out


# --- escaping ----------------------------------------------------------------------------


def _esc(value: Any) -> str:
    """Text for an HTML element or attribute: ``&<>"'`` escaped, so it can never be markup."""
    return html.escape(str(value), quote=True)


def _text_html(text: str) -> str:
    """Lines of text as HTML, line breaks kept."""
    return "<br>".join(_esc(line) for line in text.splitlines())


_TD = '<td style="text-align:left;white-space:pre-wrap">'


def html_table(frame: pd.DataFrame) -> str:
    """A table as HTML with every header and cell escaped.

    Built here rather than by pandas' ``_repr_html_`` so that escaping does not hang on a
    display option, and long values (a body) are not cut to ``display.max_colwidth``.
    """
    head_cells = [frame.index.name or "", *frame.columns]
    head = "".join(f'<th style="text-align:left">{_esc(c)}</th>' for c in head_cells)
    rows = []
    for label, values in zip(frame.index, frame.itertuples(index=False), strict=True):
        cells = "".join(f"{_TD}{'' if _blank(v) else _esc(v)}</td>" for v in values)
        rows.append(f'<tr><th style="text-align:left">{_esc(label)}</th>{cells}</tr>')
    return (
        f'<table class="bcartnb-table"><thead><tr>{head}</tr></thead>'
        f"<tbody>{''.join(rows)}</tbody></table>"
    )


def _blank(value: Any) -> bool:
    return value is None or (not isinstance(value, list | tuple | dict) and bool(pd.isna(value)))


def mail_frame(mail_html: str) -> str:
    """An HTML mail shown inside a sandboxed ``<iframe srcdoc>``.

    The mail is the member's own mail: its template escaped the member's values, but the
    report must not depend on that. ``sandbox=""`` gives no scripts, no forms, no top
    navigation and a unique origin (no access to the report or its cookies); the CSP in
    front of the mail blocks every request to another host. The srcdoc attribute is
    escaped for a double-quoted attribute, so the mail cannot close it.
    """
    doc = f'<meta http-equiv="Content-Security-Policy" content="{_MAIL_CSP}">{mail_html}'
    return (
        '<iframe class="bcartnb-mail-html" sandbox="" referrerpolicy="no-referrer" '
        'style="width:100%;height:28em;border:1px solid #ccc" '
        f'srcdoc="{html.escape(doc, quote=True)}"></iframe>'
    )


# --- tables ------------------------------------------------------------------------------


def _shown(value: Any) -> str:
    if value is None:
        return "（指定なし）"
    if isinstance(value, bool):
        return "はい" if value else "いいえ"
    if isinstance(value, list | tuple) and not value:
        return "（なし: 検索結果すべて）"
    if isinstance(value, Mapping | list | tuple):
        return json.dumps(value, ensure_ascii=False)
    return mask_text(str(value))


def parameters_table(params: Mapping[str, Any]) -> pd.DataFrame:
    """The run's parameters (パラメータ / 値), secrets left out by name, addresses masked."""
    rows = [
        (_PARAM_LABELS.get(key, key), key, _shown(value))
        for key, value in params.items()
        if not _SECRET_KEY.search(key)
    ]
    return pd.DataFrame(rows, columns=["パラメータ", "キー", "値"]).set_index("パラメータ")


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


# --- charts ------------------------------------------------------------------------------


def _font_file() -> Path | None:
    # find_spec does not import matplotlib_fontja, whose import changes the global rc.
    spec = importlib.util.find_spec("matplotlib_fontja")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(next(iter(spec.submodule_search_locations))) / "fonts" / "ipaexg.ttf"
    return path if path.is_file() else None


@contextmanager
def _japanese() -> Iterator[None]:
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


def _png(fig: Figure) -> bytes:
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
    with _japanese():
        fig = Figure(figsize=(7, 3.2))
        ax = fig.add_subplot()
        if ids:
            colors = ["#e8710a" if i == current else "#1a4d8f" for i in ids]
            ax.bar(
                range(len(ids)), counts, width=0.6, color=colors, label="キャンペーンごとの配信数"
            )
            total = pd.Series(counts).cumsum().tolist()
            ax.plot(range(len(ids)), total, marker="o", color="#555555", label="累計")
            # a subject is text: `$…$` in it is not mathtext (parse_math=False)
            ax.set_xticks(range(len(ids)), names, rotation=30, ha="right", fontsize=8)
            for tick in ax.get_xticklabels():
                tick.set_parse_math(False)
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
        return _png(fig)


@functools.cache
def _drawable() -> frozenset[int]:
    """The characters the chart font has: any other one in a subject (an emoji, a control
    character) is drawn as □ rather than warned about in the middle of the report."""
    from matplotlib.ft2font import FT2Font

    font = _font_file()
    return frozenset(FT2Font(str(font)).get_charmap()) if font else frozenset()


def _bar_label(campaign_id: str, label: str | None) -> str:
    """One bar's label: at most 24 characters, so a long subject cannot squeeze the chart."""
    drawable = _drawable()
    label = "".join(
        ch if ord(ch) in drawable else ("□" if ch.isprintable() else " ") for ch in label or ""
    ).strip()
    if not label:
        when = _id_time(campaign_id)
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
    with _japanese():
        fig = Figure(figsize=(7, max(2.0, 0.28 * len(counts) + 1.0)))
        ax = fig.add_subplot()
        if len(counts):
            ax.barh([str(i) for i in counts.index][::-1], counts.to_list()[::-1], color="#1a4d8f")
        else:
            ax.text(0.5, 0.5, "該当なし", ha="center", va="center")
        ax.set_title(title or f"送信件数（{label}別）")
        ax.set_xlabel("件数")
        return _png(fig)


# --- one sample mail ---------------------------------------------------------------------


def sample_mail(plan: CampaignPlan) -> dict[str, str] | None:
    """The first sendable member's mail as sent (To, subject, text, and html for an HTML
    mail), addresses masked. The values are raw text: whoever shows them escapes them."""
    sendable = plan.audience.sendable
    if sendable.empty:
        return None
    member = {str(k): v for k, v in sendable.iloc[0].to_dict().items()}
    mail = plan.composer.compose(member)
    sample = {
        "member_id": str(mail.member_id),
        "to": mask_address(mail.to),
        "subject": mask_text(mail.subject),
        "text": mask_text(mail.text),
    }
    if mail.html is not None:
        sample["html"] = mask_text(mail.html)
    return sample


def sample_mail_html(sample: Mapping[str, str]) -> str:
    """The sample mail as the report shows it: every value escaped, the HTML part framed."""
    return (
        f"<p>会員ID {_esc(sample['member_id'])} 宛（{_esc(sample['to'])}）<br>"
        f"<b>件名:</b> {_esc(sample['subject'])}</p>"
    ) + _mail_parts(sample["text"], sample.get("html"))


def _mail_parts(text: str, mail_html: str | None) -> str:
    # a <div> that keeps line breaks, not a <pre>: the text part is prose, not code
    parts = []
    if mail_html is not None:
        parts += [
            "<p><b>HTMLメール</b>（会員に見える表示。スクリプトと外部の画像は表示しません）</p>",
            mail_frame(mail_html),
            "<p><b>テキストパート</b>（HTMLを表示できないメールソフトでの表示）</p>",
        ]
    parts.append(
        '<div class="bcartnb-mail-text" style="white-space:pre-wrap;border:1px solid #ccc;'
        f'padding:8px;overflow-wrap:anywhere">{_esc(text)}</div>'
    )
    return "".join(parts)


def show_mail(text: str, mail_html: str | None = None) -> None:
    """A rendered mail in a notebook (the templates notebook's preview), addresses masked:
    the text part as text, the HTML part in the sandboxed frame of :func:`mail_frame`.

    A Markdown code fence is not enough for the text: a member's value holding a line of
    three backticks closes it, and whatever follows is Markdown again.
    """
    masked = mask_text(text)
    _show(_mail_parts(masked, None if mail_html is None else mask_text(mail_html)), masked)


# --- showing in the notebook (IPython is untyped: one typed doorway) ---------------------

#: One output of the report: a mime bundle (``text/html`` + ``text/plain``, or ``image/png``).
Block = dict[str, str]


def _display(*objs: Any, **kwargs: Any) -> None:
    from IPython import display as ipd

    show: Callable[..., None] = ipd.display
    show(*objs, **kwargs)


def _block(body_html: str, plain: str) -> Block:
    """One block of the report: HTML built with escaped values, and the same as plain text
    for readers of the .ipynb that show text only (papermill's log, ``nbval``)."""
    return {
        "text/html": f'<div class="bcartnb-report {_NO_MATH}">{body_html}</div>',
        "text/plain": plain,
    }


def _show(body_html: str, plain: str) -> None:
    _display(_block(body_html, plain), raw=True)


def _heading(level: int, text: str) -> Block:
    return _block(f"<h{level}>{_esc(text)}</h{level}>", text)


def _paragraph(text: str) -> Block:
    return _block(f"<p>{_text_html(text)}</p>", text)


def _table(frame: pd.DataFrame) -> Block:
    return _block(html_table(frame), frame.to_string())


def _image(png: bytes, alt: str) -> Block:
    return {"image/png": base64.b64encode(png).decode("ascii"), "text/plain": alt}


# --- the summary a caller reads back ------------------------------------------------------

_SUMMARY_TAG = "bcartnb-summary"


def _safe_summary(summary: Mapping[str, Any]) -> dict[str, Any]:
    out = json.loads(json.dumps(dict(summary), ensure_ascii=False, default=str))
    if "warnings" in out:
        out["warnings"] = [mask_text(str(w)) for w in out["warnings"]]
    if "checks" in out:  # a finding's detail may quote a link or an address from the mail
        out["checks"] = [
            {k: mask_text(str(v)) if isinstance(v, str) else v for k, v in dict(c).items()}
            for c in out["checks"]
        ]
    return dict(out)


def record_summary(summary: Mapping[str, Any]) -> dict[str, Any]:
    """Record the run's summary under :data:`SUMMARY_MIMETYPE` (for :func:`read_summary`).

    The output is tagged so that the exported document leaves it out: it is data for a
    program, and the report shows the same numbers in words and tables.
    """
    data = _safe_summary(summary)
    _display(
        {SUMMARY_MIMETYPE: data, "text/plain": json.dumps(data, ensure_ascii=False, indent=1)},
        metadata={"tags": [_SUMMARY_TAG]},
        raw=True,
    )
    return data


def read_summary(nb_path: str | os.PathLike[str]) -> dict[str, Any]:
    """The summary recorded by :func:`record_summary` in an executed notebook (the last one)."""
    path = Path(nb_path)
    try:
        nb = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as err:
        raise BcartnbError(
            f"{path}: notebook not found", ja="実行済みのノートブックが見つかりません。"
        ) from err
    except json.JSONDecodeError as err:
        raise BcartnbError(
            f"{path}: not a notebook (invalid JSON: {err})",
            ja="ノートブックとして読めないファイルです。",
        ) from err
    found: dict[str, Any] | None = None
    for cell in nb.get("cells", []):
        for output in cell.get("outputs", []) or []:
            data = output.get("data", {})
            if SUMMARY_MIMETYPE in data:
                found = data[SUMMARY_MIMETYPE]
    if found is None:
        raise BcartnbError(
            f"{path}: no campaign summary recorded (did the notebook finish?)",
            ja="ノートブックに配信の結果が記録されていません（最後まで実行されましたか）。",
        )
    return found


# --- what the report says of a campaign ---------------------------------------------------

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


def outcome_words(
    status: str, *, dry_run: bool, failed: int, exit_code: int | None, sent: int = 0
) -> str:
    """The run's result and exit code in Japanese words (the header's 結果)."""
    if dry_run:
        words = "確認のみ: 1通も送信していません"
    elif status == "done" and not failed:
        words = "完了: すべてのメールが受け付けられました"
    elif status == "done":
        words = f"完了: ただし {failed:,} 件は受信側に拒否されました"
    elif status == "interrupted":
        words = "中断: 残りは再開コマンドで送れます"
    elif status == "sending":
        words = "送信中: いま別の処理が送信しています"
    elif status == "cancelled" and sent:
        words = f"取り消し: 送信済み {sent:,} 件のあと、残りは送らずに止めました"
    elif status == "cancelled":
        words = "取り消し: 1通も送らずに止めました"
    else:
        words = "未完了: 残りは再開コマンドで送れます"
    return words if exit_code is None else f"{words}（終了コード {exit_code}）"


def _jst(when: datetime | None) -> str:
    if when is None:
        return "—"
    return f"{when.astimezone(TOKYO):%Y-%m-%d %H:%M:%S}（日本時間）"


def _from_shown(settings: Settings) -> str:
    name = settings.from_name.strip()
    return mask_text(f"{name} <{settings.from_addr}>" if name else settings.from_addr)


@dataclass
class CampaignReport:
    """Everything the report document shows, gathered once: from a run in the notebook
    (:func:`from_run`) or from the ledger afterwards (:func:`from_ledger`), so both give
    the same document. Addresses are masked when they are put in here."""

    summary: dict[str, Any]
    message: str
    subject: str
    sender: str
    plan: str
    user: str
    host: str
    started: datetime | None
    finished: datetime | None
    scheduled_at: str | None
    params: dict[str, Any]
    filter_text: str
    usage: dict[str, int]
    usage_labels: dict[str, str]
    admin: str
    sample: dict[str, str] | None
    sendable: pd.DataFrame | None
    unsendable: pd.DataFrame | None
    failures: list[tuple[int, str, int | None, str]]
    resume_command: str | None
    notes: list[str] = field(default_factory=list)

    @property
    def campaign_id(self) -> str:
        return str(self.summary["campaign_id"])

    @property
    def title(self) -> str:
        return f"メール配信レポート {self.campaign_id}"


def _header(doc: CampaignReport) -> Block:
    s = doc.summary
    rows = [
        ("キャンペーンID", doc.campaign_id),
        ("件名", doc.subject),
        ("差出人（From）", doc.sender),
        ("プラン", doc.plan),
        ("実行したユーザー", f"{doc.user}（マシン: {doc.host}）"),
    ]
    if doc.scheduled_at:
        rows.append(("予定時刻", doc.scheduled_at))
    rows += [
        ("開始", _jst(doc.started)),
        ("終了", _jst(doc.finished) if doc.finished else "（まだ終わっていません）"),
        ("種別", "確認のみ（dry run）" if s.get("dry_run") else "送信"),
        (
            "結果",
            outcome_words(
                str(s.get("status")),
                dry_run=bool(s.get("dry_run")),
                failed=int(s.get("failed") or 0),
                exit_code=s.get("exit_code"),
                sent=int(s.get("sent") or 0),
            ),
        ),
    ]
    frame = pd.DataFrame(rows, columns=["項目", "内容"]).set_index("項目")
    body = f"<h1>{_esc(doc.title)}</h1>{html_table(frame)}"
    return _block(body, f"{doc.title}\n{frame.to_string()}")


def _members_table(frame: pd.DataFrame, limit: int = 500) -> pd.DataFrame:
    """The unsendable as a reviewer reads them: 会員ID, 会社名, 担当者, address (masked), 理由."""
    masked = mask_frame(frame.head(limit))
    out = pd.DataFrame(index=pd.Index(masked["id"].tolist(), name="会員ID"))
    for column in ("comp_name", "tanto_last_name", "tanto_first_name", "email"):
        if column in masked.columns:
            out[COLUMN_LABELS.get(column, column)] = [
                "" if _blank(v) else mask_text(str(v)) for v in masked[column]
            ]
    out["送信できない理由"] = [REASON_LABELS.get(str(r), str(r)) for r in masked["reason"]]
    return out


def _failures_table(failures: list[tuple[int, str, int | None, str]]) -> pd.DataFrame:
    rows = [
        (mid, mask_address(addr), failure_label(code), mask_text(msg))
        for mid, addr, code, msg in failures
    ]
    return pd.DataFrame(
        rows, columns=["会員ID", "メールアドレス", "理由", "受信側の応答"]
    ).set_index("会員ID")


def report_blocks(doc: CampaignReport) -> list[Block]:
    """The document, block by block, in the order a reviewer reads it."""
    s = doc.summary
    out = [_header(doc), _paragraph(doc.message)]
    for note in doc.notes:
        out.append(_block(f'<p class="bcartnb-note">{_text_html(note)}</p>', note))
    if s.get("warnings"):
        warnings = [mask_text(str(w)) for w in s["warnings"]]
        out.append(_heading(2, "注意"))
        out.append(
            _block(
                '<ul class="bcartnb-warnings">'
                + "".join(f"<li>{_text_html(w)}</li>" for w in warnings)
                + "</ul>",
                "\n".join(f"- {w}" for w in warnings),
            )
        )
    if s.get("checks"):  # 送信前の確認 (bcartnb.mailcheck): warnings about the mail itself
        lines = [
            f"{c.get('message', '')}" + (f"（{c['detail']}）" if c.get("detail") else "")
            for c in s["checks"]
        ]
        who = f"会員ID {s['checks_member']} のメール" if s.get("checks_member") else "メール"
        out.append(_heading(2, f"送信前の確認（{who}）"))
        out.append(
            _block(
                '<ul class="bcartnb-checks">'
                + "".join(f"<li>{_text_html(line)}</li>" for line in lines)
                + "</ul>",
                "\n".join(f"- {line}" for line in lines),
            )
        )
    out += [_heading(2, "送信件数"), _table(counts_table(s))]
    out += [_heading(3, "送信できない理由"), _table(reasons_table(s["reasons"]))]
    quota = s["quota"]
    out += [_heading(2, "メール配信上限数"), _table(quota_table(quota))]
    note = "（確認のみ: 今回分は見込み）" if s.get("dry_run") else ""
    out.append(_paragraph(f"{quota.get('month', '')} の配信数{note}"))
    chart = usage_chart(
        doc.usage, quota.get("cap"), str(quota.get("month", "")), doc.campaign_id, doc.usage_labels
    )
    out.append(_image(chart, "今月の配信数のグラフ"))
    if doc.sendable is not None:
        out.append(_heading(2, "送信対象の内訳"))
        out.append(_image(breakdown_chart(doc.sendable, "pref"), "都道府県別の送信件数"))
        out.append(
            _image(breakdown_chart(doc.sendable, "price_group_id"), "価格グループ別の送信件数")
        )
    out.append(_heading(2, "会員に届くメール" if not s.get("dry_run") else "送信されるメールの例"))
    if doc.sample is not None:
        sample = doc.sample
        out.append(
            _block(
                sample_mail_html(sample),
                f"会員ID {sample['member_id']} 宛（{sample['to']}）\n件名: {sample['subject']}\n\n"
                + sample["text"],
            )
        )
    elif s.get("sendable") == 0:
        out.append(_paragraph("送信できる会員がいません。"))
    else:
        out.append(_paragraph("メールの例は表示できません（上の注記を参照）。"))
    out.append(_heading(2, "送信できない会員"))
    if doc.unsendable is None:
        out.append(_paragraph("一覧は表示できません（上の注記を参照）。"))
    elif doc.unsendable.empty:
        out.append(_paragraph("ありません。"))
    else:
        out.append(_table(_members_table(doc.unsendable)))
        if len(doc.unsendable) > 500:
            out.append(_paragraph(f"ほか {len(doc.unsendable) - 500:,} 件"))
    out.append(_heading(2, "送信に失敗した会員"))
    if doc.failures:
        out.append(_table(_failures_table(doc.failures)))
    else:
        out.append(_paragraph("ありません。"))
    out += [_heading(2, "管理者への配信控え"), _paragraph(doc.admin)]
    out.append(_heading(2, "キャンペーンIDと再開"))
    lines = [f"キャンペーンID: {doc.campaign_id}"]
    if doc.resume_command:
        lines.append(f"残りを送る再開コマンド: {doc.resume_command}")
    html_lines = [f"キャンペーンID: <code>{_esc(doc.campaign_id)}</code>"]
    if doc.resume_command:
        html_lines.append(f"残りを送る再開コマンド: <code>{_esc(doc.resume_command)}</code>")
    out.append(_block(f"<p>{'<br>'.join(html_lines)}</p>", "\n".join(lines)))
    out += [_heading(2, "パラメータ"), _table(parameters_table(doc.params))]
    out.append(_paragraph(f"絞込オプション: {doc.filter_text}"))
    return out


# --- a campaign's notes beside the ledger -------------------------------------------------
# The ledger's schema holds who, when, the parameters, the counts and every member's
# result; what only the notebook knows (its scheduled time, the From and the subject as
# sent, the quota seen before and after) is kept in a small JSON file per campaign in a
# folder beside the ledger file, so `bcartnb report ID` can show it later.

_CAMPAIGN_ID = re.compile(r"[0-9]{8}-[0-9]{6}-[0-9a-f]{6}")


def notes_path(db: Path, campaign_id: str) -> Path:
    """Where a campaign's notes are kept: ``<ledger>.reports/<campaign id>.json``."""
    if not _CAMPAIGN_ID.fullmatch(campaign_id):
        raise CampaignStateError(
            f"{campaign_id!r} is not a campaign id (YYYYMMDD-HHMMSS-xxxxxx)",
            ja=f"キャンペーンIDの形式ではありません（{campaign_id!r}）。"
            "`bcartnb campaigns` で確かめてください。",
        )
    return db.with_name(db.name + ".reports") / f"{campaign_id}.json"


def _write_notes(db: Path, campaign_id: str, notes: Mapping[str, Any]) -> None:
    path = notes_path(db, campaign_id)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomically(path, json.dumps(dict(notes), ensure_ascii=False, indent=1))


def _read_notes(db: Path, campaign_id: str) -> dict[str, Any]:
    try:
        data = json.loads(notes_path(db, campaign_id).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _usage_labels(led: Ledger, usage: Mapping[str, int], db: Path) -> dict[str, str]:
    """「11/29 10:05 件名」 for each campaign of the month: the chart's bar labels."""
    labels = {}
    for cid in usage:
        try:
            record = led.campaign(cid)
        except BcartnbError:
            continue
        subject = _read_notes(db, cid).get("subject") or _subject_of(record.params)
        labels[cid] = f"{record.created_at.astimezone(TOKYO):%m/%d %H:%M} {subject}"
    return labels


def _subject_of(params: Mapping[str, Any]) -> str:
    if params.get("subject"):
        return str(params["subject"])
    if params.get("template"):
        return f"（テンプレート「{params['template']}」）"
    return ""


def _admin_words(
    settings: Settings, led: Ledger | None, cid: str, state: str | None, dry_run: bool
) -> str:
    """Where the administrator's copy went, in words, its address masked."""
    to = settings.admin
    when = None
    if led is not None and state == "sent":
        sends = led.sends()
        mine = sends[(sends["kind"] == "admin") & (sends["campaign_id"] == cid)]
        if len(mine):
            to, when = str(mine["address"].iloc[-1]), mine["at"].iloc[-1]
    if state == "sent":
        at = f"、{when:%Y-%m-%d %H:%M}" if when is not None else ""
        return f"{mask_address(to or '')} に送信済み（1通{at}）"
    if not to:
        return "管理者のアドレス（設定の admin）がないため、控えは送っていません。"
    if dry_run:
        return f"確認のみのため送っていません（送信すると {mask_address(to)} に1通送ります）。"
    if state == "sending":
        return f"{mask_address(to)} への送信結果が不明です（二重に送らないよう、再送はしません）。"
    return f"まだ送っていません（キャンペーンが終わったときに {mask_address(to)} に1通送ります）。"


# --- from a run in the notebook -------------------------------------------------------------


def from_run(
    plan: CampaignPlan,
    summary: DeliverySummary,
    params: Mapping[str, Any],
    *,
    scheduled_at: str | None = None,
    ledger_usage: Mapping[str, int] | None = None,
) -> CampaignReport:
    """The report of the run that just happened (the papermill notebook's)."""
    from bcartnb.ledger import Ledger
    from bcartnb.ledger.reservations import HOST, os_user

    data = summary.as_dict()
    quota = data["quota"]
    cid = summary.campaign_id  # a continued campaign keeps its first run's id
    db = require_ledger(plan.settings)
    with Ledger.open(db) as led:
        usage = dict(
            led.usage_by_campaign(quota["month"]) if ledger_usage is None else ledger_usage
        )
        labels = _usage_labels(led, usage, db)
        record = None if summary.dry_run else led.campaign(cid)
        admin = _admin_words(
            plan.settings, led, cid, record.admin_copy if record else None, summary.dry_run
        )
    if summary.dry_run and summary.sendable:
        usage[cid] = usage.get(cid, 0) + summary.sendable
    now = datetime.now(TOKYO)
    subject = mask_text(plan.draft.subject)
    started = record.created_at if record else _id_time(cid)
    labels[cid] = f"{(started or now).astimezone(TOKYO):%m/%d %H:%M} {subject}"  # as sent
    doc = CampaignReport(
        summary=_safe_summary(data),
        message=summary.message(),
        subject=subject,
        sender=_from_shown(plan.settings),
        plan=plan.plan.name,
        user=record.user if record else os_user(),
        host=record.host if record else HOST,
        started=started,
        finished=(record.finished_at if record else now),
        scheduled_at=None if scheduled_at is None else str(scheduled_at),
        params=dict(params),
        filter_text=describe_filter(plan.spec.filter),
        usage=usage,
        usage_labels=labels,
        admin=admin,
        sample=sample_mail(plan),
        sendable=plan.audience.sendable,
        unsendable=plan.audience.unsendable,
        failures=list(summary.failures),
        resume_command=summary.resume_command if summary.left and not summary.dry_run else None,
    )
    return doc


def _id_time(campaign_id: str) -> datetime | None:
    """When a campaign id was made (``YYYYMMDD-HHMMSS`` in Asia/Tokyo): a dry run's start."""
    try:
        return datetime.strptime(campaign_id[:15], "%Y%m%d-%H%M%S").replace(tzinfo=TOKYO)
    except ValueError:
        return None


def show_report(
    plan: CampaignPlan,
    summary: DeliverySummary,
    params: Mapping[str, Any],
    *,
    scheduled_at: str | None = None,
    ledger_usage: Mapping[str, int] | None = None,
) -> dict[str, Any]:
    """Display the report in the notebook, block by block; return the recorded summary.

    ``ledger_usage`` is the month's sends per campaign (``Ledger.usage_by_campaign``); when
    not given it is read from the plan's ledger.
    """
    doc = from_run(plan, summary, params, scheduled_at=scheduled_at, ledger_usage=ledger_usage)
    if not summary.dry_run:  # what only this run knows, for `bcartnb report ID` later
        notes = {"scheduled_at": doc.scheduled_at, "sender": doc.sender, "subject": doc.subject}
        try:
            _write_notes(
                require_ledger(plan.settings), doc.campaign_id, {**notes, "quota": summary.quota}
            )
        except OSError as err:  # the mail went out: the report must still be shown
            doc.notes.append(
                "`bcartnb report` 用のメモを書き込めませんでした"
                f"（{err.filename}: {err.strerror}）。あとで書き出すレポートには、"
                "予定時刻と送信時の差出人が載りません。"
            )
    for block in report_blocks(doc):
        _display(block, raw=True)
    return record_summary(summary.as_dict())


# --- from the ledger, after the fact (`bcartnb report ID`) ----------------------------------


#: Journal states of a mail that was handed to the server at least once.
_HANDED = ("sent", "failed", "deferred", "uncertain")


def from_ledger(campaign_id: str, settings: Settings) -> CampaignReport:
    """A campaign's report from the ledger (and its notes), whenever it ran.

    The counts, who and when, every failed member and the admin copy come from the ledger.
    The sample mail and the unsendable members need the member file: the campaign is planned
    again from its recorded parameters when the file is still there (with a note when its
    recipients are no longer the same), and the report says so when it is not.
    """
    from bcartnb.campaign import CampaignSpec, DeliverySummary, plan_campaign
    from bcartnb.ledger import Ledger

    db = require_ledger(settings)
    with Ledger.open(db) as led:
        try:
            record = led.campaign(campaign_id)
        except CampaignStateError as err:
            raise CampaignStateError(
                str(err),
                ja=f"キャンペーン {campaign_id!r} は配信記録にありません（確認のみの実行は"
                "記録されません）。`bcartnb campaigns` で一覧を確かめてください。",
            ) from err
        notes = _read_notes(db, campaign_id)
        month = month_of(record.created_at)
        usage = led.usage_by_campaign(month)
        labels = _usage_labels(led, usage, db)
        quota = notes.get("quota") or _quota_from_usage(record.plan, month, usage, campaign_id)
        status = {"done": "done", "cancelled": "cancelled"}.get(record.status, "unfinished")
        summary = DeliverySummary.from_record(
            record,
            status,
            dict(quota),
            [(r.member_id, r.address) for r in led.uncertain(campaign_id)],
            failures=led.failures(campaign_id),
        )
        admin = _admin_words(settings, led, campaign_id, record.admin_copy, False)
        data = summary.as_dict()
        data["status"] = record.status
        if record.status in ("sending", "cancelled"):  # no run of it ended with a code
            data["exit_code"] = None
        doc_notes: list[str] = []
        sample: dict[str, str] | None = None
        sendable: pd.DataFrame | None = None
        unsendable: pd.DataFrame | None = None
        draft_subject: str | None = None
        current = settings if settings.plan else settings.replace(plan=record.plan)
        try:
            spec = CampaignSpec.from_mapping(record.params, where=f"campaign {campaign_id}")
            plan = plan_campaign(
                spec, current, ledger=led, campaign_id=campaign_id, mail=record.mail
            )
            sample = sample_mail(plan)
        except BcartnbError as err:
            why = err.ja or str(err)
            doc_notes.append(
                f"会員ファイル {record.params.get('members')} またはテンプレートを読めないため、"
                f"メールの例と送信できない会員の一覧は表示できません（{mask_text(why)}）。"
            )
        else:
            draft_subject = plan.draft.subject
            sendable, unsendable = plan.audience.sendable, plan.audience.unsendable
            # the same mail (an older ledger's campaigns had another identity): other recipients
            if record.mail is not None and plan.fingerprint != record.fingerprint:
                doc_notes.append(
                    "会員ファイルが送信したときから変わっています（送信先が同じではありません）。"
                    "メールの例と送信できない会員の一覧は、いまのファイルから作りました。"
                )
    resume = summary.resume_command if record.status in ("unfinished", "sending") else None
    message = {
        "sending": "このキャンペーンはいま送信中です（この時点の記録です）。",
    }.get(record.status) or summary.message()
    if record.status == "cancelled" and not any(record.journal.get(s) for s in _HANDED):
        message = (
            "このキャンペーンは1通も送る前に取り消されました"
            "（メール配信上限数を超えた、メールを作れなかった、または取り消したため）。"
        )
    return CampaignReport(
        summary=_safe_summary(data),
        message=message,
        subject=str(notes.get("subject") or mask_text(draft_subject or _subject_of(record.params))),
        sender=str(notes.get("sender") or _from_shown(settings)),
        plan=record.plan,
        user=record.user,
        host=record.host,
        started=record.created_at,
        finished=record.finished_at,
        scheduled_at=notes.get("scheduled_at"),
        params=dict(record.params),
        filter_text=describe_filter(record.params.get("filter") or {}),
        usage=dict(usage),
        usage_labels=labels,
        admin=admin,
        sample=sample,
        sendable=sendable,
        unsendable=unsendable,
        failures=list(summary.failures),
        resume_command=resume,
        notes=doc_notes,
    )


def _quota_from_usage(
    plan: str, month: str, usage: Mapping[str, int], campaign_id: str
) -> dict[str, Any]:
    """Before and after, from the month's counts: the campaigns started before this one."""
    before = sum(n for cid, n in usage.items() if cid < campaign_id)
    return {
        "plan": resolve_plan(plan).name,
        "month": month,
        "cap": resolve_plan(plan).monthly_cap,
        "used_before": before,
        "used_after": before + usage.get(campaign_id, 0),
    }


# --- the document: the notebook's outputs without the code -------------------------------

_TEMPLATES = Path(__file__).resolve().parent / "report_template"
#: Cells the document leaves out: the notebook's own checks and papermill's error banner.
#: Outputs the document shows; a failed cell's traceback and stray prints are left out
#: (the report says in words how the run ended).
_SHOWN_OUTPUTS = ("display_data", "execute_result")
HIDDEN_CELL_TAGS = ("bcartnb-hide", "injected-parameters", "parameters", "papermill-error-cell-tag")


def _exporter() -> Any:
    """nbconvert's ``lab`` page through our small template: no code, no prompts, no
    Markdown, no require.js/MathJax/widget scripts from a CDN; the summary left out."""
    from nbconvert import HTMLExporter
    from traitlets.config import Config

    c = Config()
    c.HTMLExporter.extra_template_basedirs = [str(_TEMPLATES)]
    c.HTMLExporter.template_name = "bcartnb_report"
    c.HTMLExporter.exclude_input = True
    c.HTMLExporter.exclude_input_prompt = True
    c.HTMLExporter.exclude_output_prompt = True
    c.HTMLExporter.exclude_markdown = True
    c.HTMLExporter.exclude_raw = True
    c.HTMLExporter.exclude_unknown = True
    c.HTMLExporter.language_code = "ja"
    c.TagRemovePreprocessor.enabled = True
    c.TagRemovePreprocessor.remove_cell_tags = set(HIDDEN_CELL_TAGS)
    c.TagRemovePreprocessor.remove_single_output_tags = {_SUMMARY_TAG}
    make: Callable[..., Any] = HTMLExporter
    return make(config=c)


def export_html(notebook: str | os.PathLike[str] | Any, target: str | os.PathLike[str]) -> Path:
    """The report document: an executed notebook (a path or a node) as one standalone,
    inline HTML page (no code, nothing loaded from the network). Returns ``target``."""
    import nbformat

    read: Callable[..., Any] = nbformat.read
    nb = read(str(notebook), as_version=4) if isinstance(notebook, str | os.PathLike) else notebook
    for cell in nb.cells:  # a failed run's cell output: the report above says it in words
        if cell.get("cell_type") == "code":
            cell.outputs = [
                o for o in cell.get("outputs", []) if o.get("output_type") in _SHOWN_OUTPUTS
            ]
    title = _title_of(nb)
    if title:
        nb.metadata["title"] = title
    body, _ = _exporter().from_notebook_node(nb)
    out = Path(target)
    try:  # whole or not at all, even with two exports of one report at once
        write_atomically(out, body)
    except OSError as err:
        raise InputError(
            f"{out}: cannot write the report: {err.strerror or err}",
            ja=f"レポートを書き出せません（{out}）。フォルダがあるか、書き込めるかを確かめてください。",
        ) from err
    return out


def _title_of(nb: Any) -> str | None:
    for cell in nb.cells:
        for output in cell.get("outputs", []) or []:
            data = output.get("data", {})
            if SUMMARY_MIMETYPE in data:
                return f"メール配信レポート {data[SUMMARY_MIMETYPE].get('campaign_id', '')}"
    return None


def write_report(campaign_id: str, settings: Settings, target: str | os.PathLike[str]) -> Path:
    """``bcartnb report ID``: the campaign's report document from the ledger, as HTML."""
    from nbformat import v4

    new_output: Callable[..., Any] = v4.new_output
    new_notebook: Callable[..., Any] = v4.new_notebook
    new_code_cell: Callable[..., Any] = v4.new_code_cell
    doc = from_ledger(campaign_id, settings)
    outputs = [new_output("display_data", data=block) for block in report_blocks(doc)]
    outputs.append(
        new_output(
            "display_data",
            data={SUMMARY_MIMETYPE: doc.summary, "text/plain": ""},
            metadata={"tags": [_SUMMARY_TAG]},
        )
    )
    nb = new_notebook(
        cells=[new_code_cell(outputs=outputs, id="report")], metadata={"title": doc.title}
    )
    return export_html(nb, target)
