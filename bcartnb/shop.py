"""The shop folder: what ``bcartnb init`` writes, and adopting an earlier per-user ledger.

A shop is one folder: ``bcartnb.toml`` (the settings, commented in Japanese), ``.env`` (the
secrets' names, values empty, readable by its owner only), ``templates/``, ``reports/``,
``uploads/``, a ``.gitignore`` and the ledger (made by ``init``, or the per-user ledger of
earlier versions, adopted). Every face finds it by
looking upward from the working directory (:func:`bcartnb.settings.find_shop`), so the
monthly quota, "never twice" and the suppression list are one per shop, whoever runs what
from which subfolder.

What is written is checked by the rules that will read it (:func:`settings_from_text`): a
value ``load_settings`` would refuse is refused here, before anything is written.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import sqlite3
from dataclasses import dataclass, field
from pathlib import Path

import tomli_w

from bcartnb.exceptions import LedgerError, SettingsError
from bcartnb.ledger import Ledger
from bcartnb.ledger.schema import APPLICATION_ID
from bcartnb.ledger.snapshot import copy_ledger_file
from bcartnb.quota import resolve_plan
from bcartnb.settings import (
    DEFAULT_LEDGER,
    SHOP_FILE,
    Settings,
    legacy_ledger_path,
    load_settings,
    parse_mailbox,
    settings_from_text,
)

__all__ = [
    "FOLDERS",
    "GITIGNORE",
    "SECRET_VARIABLES",
    "ShopAnswers",
    "ShopCreated",
    "adopt_into_shop",
    "adopt_ledger",
    "check_answer",
    "check_free",
    "init_shop",
    "render_settings",
    "shop_ledger",
]

#: The secrets a shop may need, named in ``.env``: never in bcartnb.toml or a notebook.
SECRET_VARIABLES = {
    "BCARTNB_SMTP_PASSWORD": "SMTP のパスワード（[smtp] user を書いたとき）",
    "BCARTNB_UNSUBSCRIBE_SECRET": "配信停止リンクの署名用の秘密（32文字以上のランダムな文字列。"
    "一度決めたら変えない）",
    "BCARTNB_BCART_TOKEN": "BカートAPIのアクセストークン（プライベートアプリ管理で発行）",
    "BCARTNB_IMAP_PASSWORD": "不達メールを読む IMAP のパスワード（bcartnb bounces scan）",
}
#: The folders of a shop, with what each holds.
FOLDERS = {
    "templates": "メールテンプレート（<テンプレート名>.txt）",
    "reports": "キャンペーンのレポート",
    "uploads": "ウィザードでアップロードした会員CSV",
}
#: What git must never take from a shop folder: the secrets, the ledger (with its WAL and
#: shared-memory files and the report notes beside it), members' data (uploads, the B-Cart
#: API's snapshot, the suppression export), lock files and reports.
GITIGNORE = (
    ".env",
    "*.sqlite3",
    "*.sqlite3-wal",
    "*.sqlite3-shm",
    "*.sqlite3-journal",
    "*.sqlite3.reports/",
    "*.lock",
    "uploads/",
    "reports/",
    "bcart_members*.parquet",
    "bcart_members*.parquet.partial",
    "bcart_orders*.parquet",
    "bcart_suppressions*.csv",
)


@dataclass(frozen=True)
class ShopAnswers:
    """The four things a shop is asked; None leaves the key commented out, to fill in later."""

    plan: str | None = None
    from_: str | None = None
    admin: str | None = None
    signature: str | None = None

    def missing(self) -> list[str]:
        """The keys a campaign cannot go without (plan, from) that are still unset."""
        return [k for k, v in (("plan", self.plan), ("from", self.from_)) if not v]


@dataclass
class ShopCreated:
    """What :func:`init_shop` did, for the face to tell."""

    folder: Path
    settings: Path
    ledger: Path
    written: list[str] = field(default_factory=list)
    kept: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    adopted: Path | None = None
    legacy: Path | None = None


def check_answer(key: str, value: str) -> str:
    """One answer, checked as ``load_settings`` will check it; returns it as it will be
    written (a plan by its Japanese name, a signature with LF line ends)."""
    if key == "plan":
        return resolve_plan(value.strip()).name
    if key in ("from", "admin"):
        parse_mailbox(value, key)  # as load_settings will read it: nothing trimmed away
        return value
    if key == "signature":
        text = value.replace("\r\n", "\n")
        Settings(signature=text)  # the one rule for what a signature may hold
        return text
    raise ValueError(key)


def render_settings(answers: ShopAnswers) -> str:
    """A commented ``bcartnb.toml`` in Japanese: every key explained, the unset ones commented
    out with an example. Values are written by a TOML writer, so none can add a key."""

    def line(key: str, value: str | None, example: str) -> str:
        if value is None:  # one line: a commented example must stay a comment
            return f"# {key} = {_toml(example, multiline=False)}"
        return f"{key} = {_toml(value)}"

    a = answers
    return _SETTINGS_TEMPLATE.format(
        plan=line("plan", a.plan, "プラン10"),
        from_=line("from", a.from_, "見本商事オンラインショップ <shop@example.co.jp>"),
        admin=line("admin", a.admin, "admin@example.co.jp"),
        signature=line(
            "signature", a.signature, "見本商事株式会社\n〒100-0001 東京都千代田区千代田1-1"
        ),
        ledger=DEFAULT_LEDGER,
    )


def _toml(value: str, *, multiline: bool = True) -> str:
    """``value`` as a TOML string (multi-line for a signature), escaped by tomli_w."""
    text = tomli_w.dumps({"v": value}, multiline_strings=multiline and "\n" in value)
    return text[len("v = ") :].rstrip("\n")


def init_shop(
    folder: str | os.PathLike[str],
    answers: ShopAnswers,
    *,
    adopt: bool = False,
    new_ledger: bool = False,
) -> ShopCreated:
    """Make ``folder`` a shop: refused when it already has a ``bcartnb.toml``, and nothing is
    written unless the settings load. An existing ``.env`` or ``.gitignore`` is kept (the
    ignore list is added to it). ``adopt`` copies the per-user ledger of earlier versions in;
    when there is one and neither ``adopt`` nor ``new_ledger`` (the demo's fresh shop) is
    given, the ledger is left unmade, so the next command asks which it shall be."""
    root = Path(folder)
    target = check_free(root)
    text = render_settings(answers)
    settings_from_text(text, target.absolute())  # one truth: what is written must load
    try:
        root.mkdir(parents=True, exist_ok=True)
        done = ShopCreated(root, target, root / DEFAULT_LEDGER, missing=answers.missing())
        _write_new(target, text, 0o644)
        done.written.append(SHOP_FILE)
        (done.written if _write_env(root / ".env") else done.kept).append(".env")
        (done.written if _write_gitignore(root / ".gitignore") else done.kept).append(".gitignore")
        for name in FOLDERS:
            (root / name).mkdir(exist_ok=True)
            done.written.append(f"{name}/")
    except OSError as err:
        raise SettingsError(
            f"{root}: cannot write the shop folder: {err.strerror or err}",
            ja=f"お店のフォルダー {root} に書き込めません（{err.strerror or err}）。",
        ) from err
    legacy = legacy_ledger_path()
    if legacy.is_file() and adopt:
        done.adopted = adopt_ledger(legacy, done.ledger)
    elif legacy.is_file() and not new_ledger:
        done.legacy = legacy  # no ledger yet: the next command asks what to do with it
    else:
        Ledger.open(done.ledger).close()  # made here, where init says so, not on first use
    return done


def check_free(folder: str | os.PathLike[str]) -> Path:
    """The ``bcartnb.toml`` that ``init`` would write in ``folder``, refused if it exists."""
    target = Path(folder) / SHOP_FILE
    if target.exists() or target.is_symlink():
        raise SettingsError(
            f"{target} already exists: init writes a new shop folder only",
            ja=f"{target} はもうあります（bcartnb init は上書きしません）。"
            "そのまま使うか、別のフォルダーを指定してください。",
        )
    return target


def _write_new(path: Path, text: str, mode: int) -> None:
    """``path`` with ``text``, whole or not at all, and never over an existing file (a second
    ``init`` at the same moment loses, it does not overwrite)."""
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(6)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.link(tmp, path)
    except FileExistsError as err:
        raise SettingsError(
            f"{path} already exists", ja=f"{path} はもうあります（上書きしません）。"
        ) from err
    finally:
        with contextlib.suppress(OSError):
            os.unlink(tmp)


def _write_env(path: Path) -> bool:
    """The ``.env`` template, created readable by its owner only; an existing one is kept."""
    lines = [
        "# bcartnb の秘密の値。git に入れず（.gitignore 済み）、他の人に読ませないでください。",
        "# 値は = の後に書きます（空なら使いません）。環境変数があればそちらが優先します。",
    ]
    for name, why in SECRET_VARIABLES.items():
        lines += [f"# {why}", f"{name}="]
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return False
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write("\n".join(lines) + "\n")
    os.chmod(path, 0o600)  # whatever the umask
    return True


def _write_gitignore(path: Path) -> bool:
    """A ``.gitignore`` with :data:`GITIGNORE`; an existing one gets the missing lines."""
    if not path.exists():
        body = "# bcartnb: 秘密の値・配信記録・会員のデータは git に入れません\n"
        path.write_text(body + "\n".join(GITIGNORE) + "\n", encoding="utf-8")
        return True
    have = path.read_text(encoding="utf-8").splitlines()
    missing = [p for p in GITIGNORE if p not in have]
    if missing:
        sep = "" if not have or have[-1] == "" else "\n"
        with path.open("a", encoding="utf-8") as fh:
            fh.write(sep + "\n".join(["# bcartnb", *missing]) + "\n")
    return False


def adopt_ledger(
    legacy: str | os.PathLike[str], target: str | os.PathLike[str], *, timeout: float = 30.0
) -> Path:
    """Copy the per-user ledger ``legacy`` to the shop's ``target``, which must not exist.

    SQLite's backup API copies one consistent snapshot, the WAL's committed pages included,
    even while another process writes; the copy is checked (ours, intact) before it takes
    the target's name, and the original is left as it was (a backup to keep).
    """
    src, dst = Path(legacy), Path(target)
    if dst.exists():
        raise SettingsError(
            f"{dst} already exists: the shop has its ledger, nothing adopted",
            ja=f"お店の配信記録 {dst} がもうあります。以前の配信記録は取り込みませんでした。",
        )
    tmp = dst.with_name(f".{dst.name}.{secrets.token_hex(6)}.adopting")
    try:
        _backup(src, tmp, timeout)
        os.link(tmp, dst)
    except sqlite3.Error as err:
        raise LedgerError(
            f"{src}: cannot copy the ledger: {err}",
            ja=f"以前の配信記録 {src} をコピーできません（{err}）。",
        ) from err
    except FileExistsError as err:
        raise SettingsError(
            f"{dst} already exists", ja=f"お店の配信記録 {dst} がもうあります。"
        ) from err
    finally:
        for leftover in (tmp, *(tmp.with_name(tmp.name + s) for s in ("-journal", "-wal"))):
            with contextlib.suppress(OSError):
                os.unlink(leftover)
    return dst


def _backup(src: Path, tmp: Path, timeout: float) -> None:
    copy = sqlite3.connect(tmp)
    try:
        copy_ledger_file(src, copy, timeout)  # nothing left beside the original
        app_id = copy.execute("PRAGMA application_id").fetchone()[0]
        if app_id != APPLICATION_ID:
            raise LedgerError(
                f"{src} is not a bcartnb ledger (application_id {app_id})",
                ja=f"{src} は bcartnb の配信記録ではありません。",
            )
        copy.execute("PRAGMA journal_mode = DELETE")  # one file, no -wal left behind
        if copy.execute("PRAGMA quick_check").fetchone()[0] != "ok":
            raise LedgerError(
                f"{src}: the copy failed its integrity check",
                ja=f"以前の配信記録 {src} のコピーが壊れています。",
            )
    finally:
        copy.close()


def shop_ledger(settings_file: Path) -> Path:
    """The ledger a shop's own file names (``BCARTNB_DB`` left aside): where adopting puts
    the records."""
    settings = load_settings(settings_file.absolute(), env={})
    assert settings.db is not None  # a settings file always places the ledger
    return settings.db


def adopt_into_shop(settings_file: Path) -> Path:
    """``bcartnb init --adopt-ledger`` in an existing shop: the per-user ledger, copied to
    the shop's ledger path."""
    legacy = legacy_ledger_path()
    if not legacy.is_file():
        raise SettingsError(
            f"no earlier per-user ledger at {legacy}: nothing to adopt",
            ja=f"以前の配信記録（{legacy}）はありません。取り込むものはありません。",
        )
    return adopt_ledger(legacy, shop_ledger(settings_file))


_SETTINGS_TEMPLATE = """\
# お店の設定（bcartnb.toml）: bcartnb init が書きました。
# このフォルダーとその下のフォルダーで動かす bcartnb（コマンド・ウィザード・papermill）は、
# この設定と、このフォルダーの配信記録（ledger）を使います。
# パスワードなどの秘密の値はここに書かず、.env に書きます。
# パスは、このファイルのあるフォルダーからの相対パスです。

# プラン: メール配信上限数（月）の元になります。
# ライトプラン・プラン10・プラン30・プラン50・プラン100・プラン300・自社SMTP（上限なし）
{plan}

# 送信元（From）: 「表示名 <アドレス>」で書けます。表示名は特定電子メール法の送信者名です。
{from_}

# 管理者のアドレス: キャンペーンごとに1通、件数つきの控えが届きます。
{admin}

# 署名: 「設定している署名を挿入」で本文の後に入ります。住所・問い合わせ先・配信停止の方法を。
{signature}

# 配信記録（ledger）: 今月の送信数・配信履歴・配信停止リストを入れる SQLite ファイル。
# 省略すると、このフォルダーの {ledger} です。環境変数 BCARTNB_DB が優先します。
# ledger = "{ledger}"

# メールテンプレートのフォルダー
templates = "templates"

# 保存した絞込条件（セグメント）のファイル
# segments = "segments.toml"

# ワンクリック配信停止のURL（{{{{ unsubscribe_token }}}} を入れます。.env の
# BCARTNB_UNSUBSCRIBE_SECRET が必要です）と、配信停止を受け付けるアドレス
# unsubscribe_url = "https://shop.example.co.jp/mail/stop/{{{{ unsubscribe_token }}}}"
# unsubscribe_mailto = "unsubscribe@shop.example.co.jp"

# [shop]
# 配信停止のページ・レポートに出すお店の名前（省略すると送信元の表示名）、
# お店のサイトのURL（配信停止のページからのリンク）、お問い合わせ先（1行）
# name = "見本商事オンラインショップ"
# url = "https://shop.example.co.jp/"
# contact = "TEL 03-0000-0000（平日 9:00〜18:00）"

[smtp]
# 送信に使う SMTP サーバー。既定は試験用の埋め込みサーバー（bcartnb sink）です。
host = "127.0.0.1"
# ポート番号（starttls は 587、ssl は 465 が普通です）
port = 8025
# 暗号化: none（なし）・starttls（ポート587）・ssl（ポート465）
security = "none"
# SMTP AUTH のユーザー名。パスワードは .env の BCARTNB_SMTP_PASSWORD に書きます。
# user = "shop@example.co.jp"
# 応答を待つ秒数
# timeout = 30

# [delivery]
# 同時に開く SMTP の接続数（1〜64）
# connections = 4
# 1秒・1時間あたりに送る上限（共用サーバーでは控えめに）
# rate_per_second = 10
# rate_per_hour = 2000
# 一時的なエラー（4xx）のメールを送り直す回数と、最初の待ち秒数（倍々に延びます）
# retries = 6
# backoff = 30

# [bcart]
# BカートAPIのURL。アクセストークンは .env の BCARTNB_BCART_TOKEN に書きます。
# api_url = "https://api.bcart.jp/api/v1"

# [hygiene]
# 一時的な不達が soft_window_days 日に soft_threshold 回で配信停止にします。
# soft_threshold = 3
# soft_window_days = 30
# VERP: true にすると、不達メールがどのキャンペーンのどの会員宛てかを確実に突き止めます
# （bounce_address の + の後に付けます。既定の宛先は from）。
# verp = false
# bounce_address = "bounces@shop.example.co.jp"

# [tracking]
# 開封・クリックの計測。配信停止サーバーの公開アドレスを書くと、メールのリンクがここを通り、
# bcartnb results で開封数・クリック数が見られます
# （キャンペーンごとに track = false で止められます）。
# url = "https://shop.example.co.jp/t"
# track = true
# 開封・クリックの記録を残す日数（これより古い記録はサーバーが起動時と毎日削除します）。
# retention_days = 365

# [purchase]
# 受注CSV（--orders・キャンペーンファイルの orders）から作る購入履歴の列のしきい値。
# 新規: 初回購入から new_days 日以内。休眠・離反: 最終購入から dormant_days・churned_days 日以上。
# new_days = 90
# dormant_days = 180
# churned_days = 365
# 優良: F と M がどちらも loyal_rank 以上
# loyal_rank = 4
# R・F・M の 2〜5 の境目（日数・購入回数・購入金額合計（税込））
# recency_days = [30, 90, 180, 365]
# frequency = [2, 3, 5, 10]
# monetary = [30000, 100000, 300000, 1000000]
# 数えない受注の対応状況
# excluded_statuses = ["キャンセル", "返品"]

# [names.price_groups]
# ウィザードの絞込オプションで、価格グループIDの横に出す名前（ID = "名前"）
# 1 = "一般"
# [names.sales_staff]
# 営業担当IDの横に出す名前
# 101 = "佐藤"
"""
