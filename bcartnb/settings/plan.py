"""The shop's plan (プラン): required, never guessed, and refused where it was named.

A guessed plan would guess the monthly cap, so every face refuses a missing one the same
way, saying which file was read and where settings are found.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from bcartnb.exceptions import SettingsError
from bcartnb.plans import Plan, resolve_plan
from bcartnb.settings.model import Settings
from bcartnb.settings.shop import SHOP_FILE, no_shop_error

__all__ = ["SETTINGS_SOURCES_JA", "check_plan", "missing_plan_error", "require_plan"]

#: Where settings come from, in the shop's words: told whenever a needed one is missing (a
#: papermill run in a folder without bcartnb.toml otherwise only learns that a plan is unset).
SETTINGS_SOURCES_JA = (
    "設定は、環境変数 BCARTNB_CONFIG が指すファイル、なければ今のフォルダから上にたどって"
    "最初に見つかった bcartnb.toml（お店のフォルダー）から読み込みます"
    "（.env と環境変数 BCARTNB_PLAN・BCARTNB_DB・BCARTNB_SMTP_HOST などが優先します）。"
)


def check_plan(name: str, where: str, envd: Mapping[str, str], *, dotenv: bool) -> None:
    """An unknown plan refused here, where it is known whether the file, the environment
    or ``.env`` named it: later, ``resolve_plan`` sees only the name."""
    if not envd.get("BCARTNB_PLAN"):
        source, source_ja = f"{where}: plan", f"設定ファイル {where} の plan "
    elif dotenv and not os.environ.get("BCARTNB_PLAN"):
        source, source_ja = "BCARTNB_PLAN in .env", ".env の BCARTNB_PLAN "
    else:
        source, source_ja = "BCARTNB_PLAN", "環境変数 BCARTNB_PLAN "
    try:
        resolve_plan(name)
    except SettingsError as err:
        raise SettingsError(f"{source}: {err}", ja=f"{source_ja}に指定された{err.ja}") from err


def require_plan(settings: Settings) -> Plan:
    """The shop's plan; none set is a setting to fix, not a default to guess (a guessed plan
    would guess the monthly cap), so every face refuses the same way, saying where settings
    are found."""
    if not settings.plan:
        raise missing_plan_error(settings)
    return resolve_plan(settings.plan)


def missing_plan_error(settings: Settings) -> SettingsError:
    """No plan in the settings: say which file was read (if any) and where settings are found;
    with no shop at all, that is the thing to fix first."""
    if settings.source is None and settings.db is None:
        return no_shop_error()
    if settings.source is None:
        read, read_ja = (
            f"no settings file (BCARTNB_CONFIG unset, no {SHOP_FILE} here or above)",
            "設定ファイルなし",
        )
    else:
        read = f"settings file {settings.source}"
        read_ja = f"設定ファイル {settings.source}"
    return SettingsError(
        'no plan set: put plan = "プラン10" (or light, plan10 … own-smtp) in bcartnb.toml or set '
        f"BCARTNB_PLAN; read: {read}, in {Path.cwd()}",
        ja=f"プランが設定されていません（{read_ja}）。{SETTINGS_SOURCES_JA}"
        'bcartnb.toml に plan = "プラン10" のように書くか、BCARTNB_PLAN を設定してください。',
    )
