"""The shop folder and its one ledger: where they are, and what to do when there is none.

The ledger belongs to the shop: ``ledger`` in ``bcartnb.toml`` (``ledger.sqlite3`` beside it by
default), ``BCARTNB_DB`` overriding. With neither a shop nor ``BCARTNB_DB`` there is no ledger
(``Settings.db`` is None) and :func:`require_ledger` says to run ``bcartnb init``: a ledger made
silently somewhere else would split the quota, "never twice" and the suppression list.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from bcartnb.exceptions import SettingsError
from bcartnb.settings.checks import CONTROL, check_type
from bcartnb.settings.model import Settings

__all__ = [
    "DEFAULT_LEDGER",
    "SHOP_FILE",
    "find_shop",
    "ledger_path",
    "legacy_ledger_path",
    "no_shop_error",
    "require_ledger",
    "unadopted_ledger",
]

#: The shop folder's settings file, looked for upward from the working directory.
SHOP_FILE = "bcartnb.toml"
#: The ledger's file name in the shop folder when ``ledger`` is not set.
DEFAULT_LEDGER = "ledger.sqlite3"


def legacy_ledger_path(env: Mapping[str, str] | None = None) -> Path:
    """Where earlier versions kept one ledger per user when no ``BCARTNB_DB`` was set."""
    envd = os.environ if env is None else env
    base = envd.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "bcartnb" / "ledger.sqlite3"


def find_shop(start: str | os.PathLike[str] | None = None) -> Path | None:
    """The ``bcartnb.toml`` in ``start`` (the working directory) or the nearest folder above
    it, as git finds a repository: every face, in any subfolder, reads the same shop."""
    here = Path(start if start is not None else Path.cwd()).absolute()
    for folder in (here, *here.parents):
        candidate = folder / SHOP_FILE
        if candidate.is_file():
            return candidate
    return None


def ledger_path(
    data: Mapping[str, Any], where: str, rel: Callable[[str], Path], shop: Path | None
) -> Path | None:
    """The ``ledger`` key (``db``, its old name, still read), relative to the settings file;
    by default ``ledger.sqlite3`` in the shop folder; None with no shop at all."""
    if "ledger" in data and "db" in data:
        raise SettingsError(
            f"{where}: ledger and db name the same file: keep ledger only",
            ja=f"{where} に ledger と db の両方があります（同じ配信記録ファイルの設定です）。"
            "ledger だけを残してください。",
        )
    for key in ("ledger", "db"):
        if key in data:
            value = check_type(data, key, str, where)
            if not value.strip() or CONTROL.search(value):
                raise SettingsError(
                    f"{where}: {key} must be a file path, not {value!r}",
                    ja=f"{where} の {key} には配信記録ファイルのパスを書いてください（{value!r}"
                    " ではなく）。",
                )
            return rel(value)
    return shop / DEFAULT_LEDGER if shop is not None else None


def unadopted_ledger(ledger: Path | None, legacy: Path) -> Path | None:
    """The per-user ledger of earlier versions, if it holds records the shop has not taken
    over: the shop's own ledger does not exist yet and the old one does."""
    if ledger is None or ledger.exists() or not legacy.is_file():
        return None
    return None if legacy.resolve() == ledger.resolve() else legacy


def require_ledger(settings: Settings) -> Path:
    """The shop's ledger file, or the error that says how to get one: ``bcartnb init`` when
    no shop was found, adopting the per-user ledger of earlier versions when one is there.

    Every stage that opens the ledger comes through here, so no ledger is ever created
    silently outside the shop (a second ledger would allow a second monthly cap and forget
    who unsubscribed).
    """
    if settings.db is None:
        raise no_shop_error()
    legacy = settings.legacy_ledger
    if legacy is not None and legacy.is_file() and not settings.db.exists():
        raise SettingsError(
            f"the shop's ledger {settings.db} does not exist yet, but an earlier per-user "
            f"ledger {legacy} does: adopt it (bcartnb init --adopt-ledger), keep using it "
            f'(ledger = "{legacy}"), or start a new one (ledger = "{DEFAULT_LEDGER}")',
            ja=f"以前の配信記録 {legacy} があります（今月の送信数・配信履歴・配信停止リスト）。"
            "お店のフォルダーで bcartnb init --adopt-ledger を実行して取り込むか、"
            f'bcartnb.toml に ledger = "{legacy}" と書いてそのまま使うか、'
            f'新しく始めるなら ledger = "{DEFAULT_LEDGER}" と書いてください。',
        )
    return settings.db


def no_shop_error() -> SettingsError:
    """No shop here or above: the one fix is ``bcartnb init`` (and adopting an old ledger)."""
    here = Path.cwd()
    legacy = legacy_ledger_path()
    hint, hint_ja = "", ""
    if legacy.is_file():
        hint = f"; an earlier per-user ledger is at {legacy}: bcartnb init --adopt-ledger takes it"
        hint_ja = (
            f"以前の配信記録 {legacy} は、作ったフォルダーで bcartnb init --adopt-ledger を"
            "実行すると取り込めます。"
        )
    return SettingsError(
        f"no shop folder: no {SHOP_FILE} in {here} or any folder above it, BCARTNB_CONFIG "
        f"and BCARTNB_DB unset; run `bcartnb init FOLDER` and work inside it{hint}",
        ja=f"お店のフォルダーが見つかりません（{here} とその上のフォルダーに {SHOP_FILE} がなく、"
        "BCARTNB_CONFIG・BCARTNB_DB も未設定です）。bcartnb init でお店のフォルダーを作り、"
        f"その中で実行してください。{hint_ja}",
    )
