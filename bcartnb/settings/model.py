"""The shop's settings as one frozen, checked object that every stage takes.

Each section checks its own values (:mod:`~bcartnb.settings.smtp`, …); this one checks what
belongs to no section: the signature, the unsubscribe URLs and the two bounds on a template
render. A copy with changes (:meth:`Settings.replace`) is checked again.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from bcartnb.exceptions import SettingsError
from bcartnb.privacy import find_addresses
from bcartnb.settings.bcart import BcartSettings
from bcartnb.settings.checks import check_url, in_range
from bcartnb.settings.hygiene import HygieneSettings
from bcartnb.settings.names import IdNames
from bcartnb.settings.purchase import PurchaseSettings
from bcartnb.settings.smtp import DeliverySettings, SmtpSettings
from bcartnb.settings.storefront import ShopInfo
from bcartnb.settings.tracking import TrackingSettings

__all__ = ["MAX_MAIL_BYTES", "RENDER_TIMEOUT", "Settings"]

#: Seconds one template render may take: the demo newsletter renders in a tenth of a
#: millisecond and a loop over a thousand products in milliseconds, so five seconds leaves
#: room for any real template and still ends a runaway one before a wizard user gives up.
RENDER_TIMEOUT = 5.0
_RENDER_TIMEOUT_RANGE = (0.1, 600.0)
#: Bytes one composed mail may have: Postfix's default message_size_limit, so a mail this
#: size would be refused by the most common MTA anyway; a newsletter is tens of kilobytes
#: (Gmail clips HTML over 102 KB).
MAX_MAIL_BYTES = 10_240_000
_MAX_MAIL_BYTES_RANGE = (10_000, 100_000_000)
#: What a signature may not hold: the controls but the line feed and the tab.
_SIGNATURE_CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u2028\u2029]")


@dataclass(frozen=True)
class Settings:
    """Checked once when made, so a stage never meets a bad value halfway through a send."""

    plan: str | None = None
    from_addr: str = "shop@example.com"
    from_name: str = ""
    admin: str | None = None
    signature: str = ""
    signature_html: str | None = None
    #: The ledger file; None when no shop was found and BCARTNB_DB is unset (require_ledger).
    db: Path | None = None
    templates: Path = Path("templates")
    segments: Path = Path("segments.toml")
    unsubscribe_url: str | None = None
    unsubscribe_mailto: str | None = None
    #: Signs the unsubscribe links (bcartnb.mailtokens.tokens): from the environment only.
    unsubscribe_secret: str | None = field(default=None, repr=False)
    smtp: SmtpSettings = field(default_factory=SmtpSettings)
    delivery: DeliverySettings = field(default_factory=DeliverySettings)
    bcart: BcartSettings = field(default_factory=BcartSettings)
    hygiene: HygieneSettings = field(default_factory=HygieneSettings)
    #: Click and open measurement (``[tracking]``; off without a url)
    tracking: TrackingSettings = field(default_factory=TrackingSettings)
    #: ``[purchase]``: the purchase columns' thresholds (休眠, 優良, the RFM ranks)
    purchase: PurchaseSettings = field(default_factory=PurchaseSettings)
    #: 価格グループ and 営業担当 by name, for the wizard (``[names]``; empty when absent)
    names: IdNames = field(default_factory=IdNames)
    shop: ShopInfo = field(default_factory=ShopInfo)
    source: Path | None = None
    #: The per-user ledger of earlier versions, when it exists and the shop's own ledger does
    #: not yet: require_ledger says how to adopt it rather than start an empty one beside it.
    legacy_ledger: Path | None = None
    #: True when ``db`` is the shop folder's default file, named by neither the settings file
    #: nor BCARTNB_DB: the one ledger that could appear without anyone having named it.
    ledger_by_default: bool = False
    render_timeout: float = RENDER_TIMEOUT
    max_mail_bytes: int = MAX_MAIL_BYTES

    def __post_init__(self) -> None:
        for key in ("unsubscribe_url", "unsubscribe_mailto"):
            value = getattr(self, key)
            if isinstance(value, str):
                check_url(value, key, SettingsError)
        bad = _SIGNATURE_CONTROL.search(self.signature)
        if bad:
            # line breaks are the signature's own (LF; a file's CRLF reads as LF); a NUL or a
            # bare CR would reach every mail's body, where SMTP forbids them
            raise SettingsError(
                f"signature contains a control character ({bad.group()!r})",
                ja=f"署名に改行以外の制御文字（{bad.group()!r}）が含まれています。",
            )
        in_range("render_timeout", self.render_timeout, *_RENDER_TIMEOUT_RANGE, unit=" seconds")
        in_range("max_mail_bytes", self.max_mail_bytes, *_MAX_MAIL_BYTES_RANGE, integer=True)

    @property
    def shop_name(self) -> str:
        """The name members know the shop by: ``[shop] name``, else the From's display name;
        empty when neither is set (each page says what it shows instead)."""
        return self.shop.name or self.from_name.strip()

    @property
    def own_addresses(self) -> frozenset[str]:
        """The shop's own addresses (From, admin, the unsubscribe mailto and every address in
        the signature), lower-cased: a report shows these in clear, a member's masked."""
        texts = [
            self.from_addr,
            self.admin or "",
            self.unsubscribe_mailto or "",
            self.signature,
            self.signature_html or "",
        ]
        return frozenset(a.lower() for text in texts for a in find_addresses(text))

    def replace(self, **changes: Any) -> Settings:
        """A copy with some fields changed; settings stay immutable once checked."""
        return replace(self, **changes)
