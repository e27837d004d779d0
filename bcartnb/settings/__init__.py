"""Shop settings: checked once into frozen dataclasses, secrets only from the environment.

Where they come from, the later winning:

1. built-in defaults;
2. the shop's ``bcartnb.toml``: the file named by ``BCARTNB_CONFIG``, else the first one found
   looking upward from the working directory, as git finds a repository (:func:`find_shop`);
3. a ``.env`` file in the current directory, then the one beside ``bcartnb.toml`` (neither
   overrides a variable already set);
4. the environment: ``BCARTNB_SMTP_HOST``, ``_PORT``, ``_SECURITY``, ``_USER``, ``_PASSWORD``,
   ``BCARTNB_PLAN``, ``BCARTNB_DB``, ``BCARTNB_BCART_TOKEN``.

The ledger belongs to the shop: ``ledger`` in ``bcartnb.toml`` (``ledger.sqlite3`` beside it by
default), ``BCARTNB_DB`` overriding. With neither a shop nor ``BCARTNB_DB`` there is no ledger
(``Settings.db`` is None) and :func:`require_ledger` says to run ``bcartnb init``: a ledger made
silently somewhere else would split the quota, "never twice" and the suppression list.

The SMTP password, the B-Cart access token and the unsubscribe links' signing secret
(``BCARTNB_UNSUBSCRIBE_SECRET``) are read from the environment only: a TOML file or a
papermill parameter would end up in a repository or an executed notebook. Relative paths
in the file are relative to the file, so a campaign folder can be moved as a whole.

The package is the ground every layer stands on and imports nothing above it: the value
checks every TOML shares (:mod:`~bcartnb.settings.checks`), one module per section
(:mod:`~bcartnb.settings.smtp`, :mod:`~bcartnb.settings.bcart`,
:mod:`~bcartnb.settings.hygiene`, :mod:`~bcartnb.settings.storefront`), the
:class:`Settings` object (:mod:`~bcartnb.settings.model`),
the shop folder and its ledger (:mod:`~bcartnb.settings.shop`), the plan
(:mod:`~bcartnb.settings.plan`), the files read (:mod:`~bcartnb.settings.sources`) and the
loader that lays them over each other (:mod:`~bcartnb.settings.loading`).
"""

from __future__ import annotations

from bcartnb.settings.bcart import BCART_API_URL, BcartSettings
from bcartnb.settings.checks import (
    check_keys,
    check_type,
    check_url,
    control_in_url,
    is_local,
    parse_mailbox,
)
from bcartnb.settings.hygiene import HygieneSettings
from bcartnb.settings.loading import load_settings, settings_from_text
from bcartnb.settings.model import MAX_MAIL_BYTES, RENDER_TIMEOUT, Settings
from bcartnb.settings.names import IdNames
from bcartnb.settings.plan import SETTINGS_SOURCES_JA, missing_plan_error, require_plan
from bcartnb.settings.purchase import PurchaseSettings
from bcartnb.settings.shop import (
    DEFAULT_LEDGER,
    SHOP_FILE,
    find_shop,
    legacy_ledger_path,
    require_ledger,
)
from bcartnb.settings.smtp import DeliverySettings, SmtpSettings
from bcartnb.settings.sources import UNSUBSCRIBE_SECRET_ENV, read_dotenv, read_toml
from bcartnb.settings.storefront import ShopInfo
from bcartnb.settings.tracking import TrackingSettings

__all__ = [
    "BCART_API_URL",
    "DEFAULT_LEDGER",
    "MAX_MAIL_BYTES",
    "RENDER_TIMEOUT",
    "SETTINGS_SOURCES_JA",
    "SHOP_FILE",
    "UNSUBSCRIBE_SECRET_ENV",
    "BcartSettings",
    "DeliverySettings",
    "HygieneSettings",
    "IdNames",
    "PurchaseSettings",
    "Settings",
    "ShopInfo",
    "SmtpSettings",
    "TrackingSettings",
    "check_keys",
    "check_type",
    "check_url",
    "control_in_url",
    "find_shop",
    "is_local",
    "legacy_ledger_path",
    "load_settings",
    "missing_plan_error",
    "parse_mailbox",
    "read_dotenv",
    "read_toml",
    "require_ledger",
    "require_plan",
    "settings_from_text",
]
