"""Reading the shop's settings once: the file, then ``.env``, then the environment, checked.

The later source wins: built-in defaults, the shop's ``bcartnb.toml``, ``.env``, the
environment. Each section reads its own table (:mod:`~bcartnb.settings.smtp`,
:mod:`~bcartnb.settings.bcart`, :mod:`~bcartnb.settings.hygiene`); this module reads the top
level, lays the environment over it and names the file in any error. Relative paths in the
file are relative to the file, so a campaign folder can be moved as a whole.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from bcartnb.exceptions import SettingsError
from bcartnb.settings.bcart import BcartSettings, bcart_from_file
from bcartnb.settings.checks import check_keys, check_type, parse_mailbox
from bcartnb.settings.hygiene import HygieneSettings, hygiene_from_file
from bcartnb.settings.model import Settings
from bcartnb.settings.names import names_from_file
from bcartnb.settings.plan import check_plan
from bcartnb.settings.purchase import PurchaseSettings, purchase_from_file
from bcartnb.settings.shop import ledger_path, legacy_ledger_path, unadopted_ledger
from bcartnb.settings.smtp import (
    DeliverySettings,
    delivery_from_file,
    smtp_from_environment,
    smtp_from_file,
    smtp_settings,
)
from bcartnb.settings.sources import (
    UNSUBSCRIBE_SECRET_ENV,
    config_path,
    parse_toml,
    read_dotenv,
    read_toml,
)
from bcartnb.settings.storefront import ShopInfo, shop_from_file
from bcartnb.settings.tracking import TrackingSettings, tracking_from_file

__all__ = ["load_settings", "settings_from_text"]

_TOP_KEYS = {
    "plan",
    "from",
    "from_name",
    "admin",
    "signature",
    "signature_html",
    "db",
    "ledger",
    "templates",
    "segments",
    "unsubscribe_url",
    "unsubscribe_mailto",
    "smtp",
    "delivery",
    "bcart",
    "hygiene",
    "tracking",
    "purchase",
    "names",
    "shop",
    "render_timeout",
    "max_mail_bytes",
}
_TEXT_KEYS = (
    "plan",
    "admin",
    "signature",
    "signature_html",
    "unsubscribe_url",
    "unsubscribe_mailto",
    "from_name",
)


def load_settings(
    path: str | os.PathLike[str] | None = None,
    env: Mapping[str, str] | None = None,
) -> Settings:
    """Read and check the shop's settings once; every later stage takes the result."""
    envd = dict(os.environ if env is None else env)
    if env is None:
        read_dotenv(envd, path)
    cfg_path = config_path(envd, path)
    data: dict[str, Any] = read_toml(cfg_path, "settings file") if cfg_path else {}
    return _settings_from(data, cfg_path, envd, dotenv=env is None)


def settings_from_text(text: str, path: Path) -> Settings:
    """The settings ``text`` would give as the file ``path``, with no environment: how
    ``bcartnb init`` checks what it writes by the very rules that will read it."""
    return _settings_from(parse_toml(text, path, "settings file"), path, {}, dotenv=False)


def _settings_from(
    data: dict[str, Any], cfg_path: Path | None, envd: Mapping[str, str], *, dotenv: bool
) -> Settings:
    where = str(cfg_path) if cfg_path else "settings"
    check_keys(data, _TOP_KEYS, where)
    kw = _top_level(data, cfg_path, where)
    smtp_kw = smtp_from_file(data, where)
    dkw = delivery_from_file(data, where)
    bkw = bcart_from_file(data, where, envd)
    hygiene_kw = hygiene_from_file(data, where)
    tracking_kw = tracking_from_file(data, where)
    purchase_kw = purchase_from_file(data, where)
    shop_kw = shop_from_file(data, where)

    # The environment wins over the file.
    if envd.get("BCARTNB_PLAN"):
        kw["plan"] = envd["BCARTNB_PLAN"]
    if envd.get("BCARTNB_DB"):
        kw["db"] = Path(envd["BCARTNB_DB"]).expanduser()
    elif cfg_path is not None and not ({"ledger", "db"} & set(data)):
        kw["legacy_ledger"] = unadopted_ledger(kw["db"], legacy_ledger_path(envd))
        kw["ledger_by_default"] = True
    smtp_from_environment(smtp_kw, envd)
    if envd.get(UNSUBSCRIBE_SECRET_ENV):
        kw["unsubscribe_secret"] = envd[UNSUBSCRIBE_SECRET_ENV]

    if kw.get("plan"):
        check_plan(kw["plan"], where, envd, dotenv=dotenv)

    try:
        return Settings(
            **kw,
            smtp=smtp_settings(smtp_kw),
            delivery=DeliverySettings(**dkw),
            bcart=BcartSettings(**bkw),
            hygiene=HygieneSettings(**hygiene_kw),
            tracking=TrackingSettings(**tracking_kw),
            purchase=PurchaseSettings(**purchase_kw),
            names=names_from_file(data, where),
            shop=ShopInfo(**shop_kw),
        )
    except SettingsError as err:
        raise SettingsError(f"{where}: {err}", ja=err.ja) from None


def _top_level(data: Mapping[str, Any], cfg_path: Path | None, where: str) -> dict[str, Any]:
    """The keys outside any table, typed; paths made relative to the settings file."""
    base = cfg_path.parent if cfg_path else Path.cwd()

    def rel(value: str) -> Path:
        p = Path(value).expanduser()
        return p if p.is_absolute() else base / p

    kw: dict[str, Any] = {"source": cfg_path}
    for key in _TEXT_KEYS:
        if key in data:
            kw[key] = check_type(data, key, str, where)
    if "from" in data:
        name, addr = parse_mailbox(check_type(data, "from", str, where), f"{where}: from")
        kw["from_addr"] = addr
        if name and "from_name" not in data:
            kw["from_name"] = name
    if "admin" in kw:
        kw["admin"] = parse_mailbox(kw["admin"], f"{where}: admin")[1]
    kw["db"] = ledger_path(data, where, rel, base if cfg_path else None)
    # saved filters (セグメント) live beside the settings, not in the ledger: a shop edits them
    for key, default in (("templates", "templates"), ("segments", "segments.toml")):
        kw[key] = rel(check_type(data, key, str, where)) if key in data else base / default
    if "render_timeout" in data:  # ranges checked by Settings itself, like every number
        kw["render_timeout"] = float(check_type(data, "render_timeout", (int, float), where))
    if "max_mail_bytes" in data:
        kw["max_mail_bytes"] = check_type(data, "max_mail_bytes", int, where)
    return kw
