"""The campaign report: what a reviewer reads in the executed papermill notebook.

The batch notebook (``notebooks/campaign.ipynb``) is a parameters cell and calls into this
module, so the report looks the same whoever runs it and is tested here rather than in a
notebook. Two rules hold for every function:

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

import html
import importlib.util
import io
import json
import os
import re
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from bcartnb.audience import REASON_LABELS, REASONS
from bcartnb.delivery import mask_address, mask_text
from bcartnb.exceptions import BcartnbError
from bcartnb.filters import describe_filter
from bcartnb.members import COLUMN_LABELS

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from bcartnb.campaign import CampaignPlan
    from bcartnb.delivery import DeliverySummary

__all__ = [
    "SUMMARY_MIMETYPE",
    "breakdown_chart",
    "counts_table",
    "data_dir",
    "demo_path",
    "html_table",
    "mail_frame",
    "mask_address",
    "mask_frame",
    "mask_text",
    "parameters_table",
    "quota_table",
    "read_summary",
    "reasons_table",
    "record_summary",
    "resolve_members",
    "sample_mail",
    "sample_mail_html",
    "show_mail",
    "show_report",
    "usage_chart",
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
}


# --- where the demo data is --------------------------------------------------------------


def data_dir() -> Path:
    """The repository's ``data/`` folder, found from the package, so any cwd works."""
    return Path(__file__).resolve().parent.parent / "data"


def demo_path(*parts: str) -> Path:
    """A path inside ``data/`` (``demo_path("demo_members.csv")``)."""
    return data_dir().joinpath(*parts)


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
        raise BcartnbError("report: the Japanese chart font (matplotlib-fontja) is missing")
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
    usage: Mapping[str, int], cap: int | None, month: str, current: str | None = None
) -> bytes:
    """This month's sends per campaign (bars, the current one highlighted), the running
    total (line) and the cap (dashed): how close the shop is to B-Cart's monthly limit."""
    from matplotlib.figure import Figure

    ids = list(usage)
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
            ax.set_xticks(range(len(ids)), [i[-13:] for i in ids], rotation=30, ha="right")
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
    parts = [
        '<pre class="bcartnb-mail-text" style="white-space:pre-wrap;border:1px solid #ccc;'
        f'padding:8px">{_esc(text)}</pre>'
    ]
    if mail_html is not None:
        parts += [
            "<p><b>HTMLメール</b>（スクリプトと外部の画像は表示しません）</p>",
            mail_frame(mail_html),
        ]
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


def _display(*objs: Any, **kwargs: Any) -> None:
    from IPython import display as ipd

    show: Callable[..., None] = ipd.display
    show(*objs, **kwargs)


def _show(body_html: str, plain: str) -> None:
    """One block of the report: HTML built with escaped values, and the same as plain text
    for readers of the .ipynb that show text only (papermill's log, ``nbval``)."""
    _display(
        {
            "text/html": f'<div class="bcartnb-report {_NO_MATH}">{body_html}</div>',
            "text/plain": plain,
        },
        raw=True,
    )


def _heading(level: int, text: str) -> None:
    _show(f"<h{level}>{_esc(text)}</h{level}>", text)


def _paragraph(text: str) -> None:
    _show(f"<p>{_text_html(text)}</p>", text)


def _table(frame: pd.DataFrame) -> None:
    _show(html_table(frame), frame.to_string())


def _image(png: bytes) -> Any:
    from IPython import display as ipd

    make: Callable[..., Any] = ipd.Image
    return make(data=png, format="png")


# --- the summary a caller reads back ------------------------------------------------------


def _safe_summary(summary: Mapping[str, Any]) -> dict[str, Any]:
    out = json.loads(json.dumps(dict(summary), ensure_ascii=False, default=str))
    if "warnings" in out:
        out["warnings"] = [mask_text(str(w)) for w in out["warnings"]]
    return dict(out)


def record_summary(summary: Mapping[str, Any]) -> dict[str, Any]:
    """Show the run's summary as JSON and record it under :data:`SUMMARY_MIMETYPE`."""
    data = _safe_summary(summary)
    _display(
        {
            SUMMARY_MIMETYPE: data,
            "text/plain": json.dumps(data, ensure_ascii=False, indent=1),
        },
        raw=True,
    )
    return data


def read_summary(nb_path: str | os.PathLike[str]) -> dict[str, Any]:
    """The summary recorded by :func:`record_summary` in an executed notebook (the last one)."""
    path = Path(nb_path)
    try:
        nb = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as err:
        raise BcartnbError(f"{path}: notebook not found") from err
    except json.JSONDecodeError as err:
        raise BcartnbError(f"{path}: not a notebook (invalid JSON: {err})") from err
    found: dict[str, Any] | None = None
    for cell in nb.get("cells", []):
        for output in cell.get("outputs", []) or []:
            data = output.get("data", {})
            if SUMMARY_MIMETYPE in data:
                found = data[SUMMARY_MIMETYPE]
    if found is None:
        raise BcartnbError(f"{path}: no campaign summary recorded (did the notebook finish?)")
    return found


# --- the whole report --------------------------------------------------------------------


def show_report(
    plan: CampaignPlan,
    summary: DeliverySummary,
    params: Mapping[str, Any],
    *,
    ledger_usage: Mapping[str, int] | None = None,
) -> dict[str, Any]:
    """Display every section of the report in the notebook; return the recorded summary.

    ``ledger_usage`` is the month's sends per campaign (``Ledger.usage_by_campaign``); when
    not given it is read from the plan's ledger.
    """
    from bcartnb.ledger import Ledger

    data = summary.as_dict()
    quota = data["quota"]
    if ledger_usage is None:
        with Ledger.open(plan.settings.db) as ledger:
            ledger_usage = ledger.usage_by_campaign(quota["month"])
    usage = dict(ledger_usage)
    cid = summary.campaign_id  # a continued campaign keeps its first run's id
    if summary.dry_run and summary.sendable:
        usage[cid] = usage.get(cid, 0) + summary.sendable

    mode = "確認のみ（送信していません）" if summary.dry_run else "送信"
    _heading(2, f"キャンペーン {cid}（{mode}）")
    _paragraph(summary.message())
    _heading(3, "パラメータ")
    _table(parameters_table(params))
    flt = describe_filter(plan.spec.filter)
    _show(f"<p><b>絞込オプション:</b> {_esc(flt)}</p>", f"絞込オプション: {flt}")
    _heading(3, "送信件数")
    _table(counts_table(data))
    _heading(3, "送信できない理由")
    _table(reasons_table(data["reasons"]))
    _heading(3, "メール配信上限数")
    _table(quota_table(quota))
    note = "（確認のみ: 今回分は見込み）" if summary.dry_run else ""
    _paragraph(f"今月の配信数{note}")
    _display(_image(usage_chart(usage, quota.get("cap"), quota["month"], cid)))
    _heading(3, "送信対象の内訳")
    sendable = plan.audience.sendable
    _display(_image(breakdown_chart(sendable, "pref")))
    _display(_image(breakdown_chart(sendable, "price_group_id")))
    if summary.warnings:
        warnings = [mask_text(w) for w in summary.warnings]
        _heading(3, "注意")
        _show(
            '<ul class="bcartnb-warnings">'
            + "".join(f"<li>{_text_html(w)}</li>" for w in warnings)
            + "</ul>",
            "\n".join(f"- {w}" for w in warnings),
        )
    sample = sample_mail(plan)
    _heading(3, "送信されるメールの例")
    if sample is None:
        _paragraph("送信できる会員がいません。")
    else:
        _show(
            sample_mail_html(sample),
            f"会員ID {sample['member_id']} 宛（{sample['to']}）\n件名: {sample['subject']}\n\n"
            + sample["text"],
        )
    _heading(3, "キャンペーンID と再開コマンド")
    _show(
        f"<p>キャンペーンID: <code>{_esc(cid)}</code><br>"
        f"中断した場合の再開: <code>{_esc(summary.resume_command)}</code></p>",
        f"キャンペーンID: {cid}\n中断した場合の再開: {summary.resume_command}",
    )
    return record_summary(data)
