"""Every error bcartnb raises on purpose derives from :class:`BcartnbError`.

The command line turns any ``BcartnbError`` into one line on stderr and the exit code the
class carries, so a new kind of failure only needs a subclass here, not a new ``except``
somewhere else. Third-party errors are re-raised as one of these with ``from err``, so the
context (file, row, column, host:port) is in the message and the cause in ``__cause__``.

    BcartnbError                      exit 2 unless stated
    ├── InputError                    bad input a user can fix
    │   ├── MembersFileError          member CSV: names the file, and the row and column
    │   ├── FilterError               unknown column or operator, wrong value type
    │   ├── SelectionError            checked ids outside the search result
    │   ├── SettingsError             bcartnb.toml, environment, campaign file keys
    │   ├── UsageError                the command line itself: unknown command, bad option
    │   ├── TemplateError             template store and rendering: names template, line, field
    │   ├── ComposeError              a mail that cannot be built (encoding, header injection)
    │   └── HygieneError              the suppression list: a bad address, reason or mailbox
    ├── QuotaError
    │   ├── QuotaExceededError        exit 3: the campaign does not fit in this month's cap
    │   └── LedgerError               the SQLite ledger is corrupt, locked or from a newer schema
    ├── BcartApiError                 the B-Cart API could not be reached or refused a request
    └── DeliveryError
        ├── TransportError            SMTP connect, TLS, AUTH failures: names host:port
        ├── CampaignStateError        the campaign runs elsewhere, was sent already, unknown id
        └── IncompleteError           exit 4 (unfinished), 5 (refusals) or 130, after the
                                      fact: DeliverySummary.raise_for_status, for papermill
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "BcartApiError",
    "BcartnbError",
    "CampaignStateError",
    "ComposeError",
    "DeliveryError",
    "FilterError",
    "HygieneError",
    "IncompleteError",
    "InputError",
    "LedgerError",
    "MembersFileError",
    "OrdersFileError",
    "QuotaError",
    "QuotaExceededError",
    "SelectionError",
    "SettingsError",
    "TemplateError",
    "TransportError",
    "UsageError",
]


class BcartnbError(Exception):
    """Base class: the message is the whole story, one line, fit to print without a traceback.

    ``ja`` is what the shop's staff read first in the wizard: the same failure in Japanese,
    with what to check, where one was written (the message keeps the exact details).
    """

    exit_code: int = 2
    #: What kind of failure, in Japanese: the first words the command line and the wizard
    #: show, before the explanation (``ja``) and the exact detail.
    heading: str = "エラー"

    def __init__(self, *args: object, ja: str = "") -> None:
        super().__init__(*args)
        self.ja = ja

    def line(self) -> str:
        """The whole story on one line, Japanese first: heading, explanation, exact detail."""
        ja = f"{self.heading}: {self.ja}" if self.ja else self.heading
        return " ".join(f"{ja} / {self}".split())

    def _render_traceback_(self) -> list[str]:
        """How IPython shows it in a notebook (a papermill run, the templates notebook): the
        same one line as the command line, not a stack of our own frames."""
        return [f"{type(self).__name__}: {self.line()}"]


class InputError(BcartnbError):
    """Something the user gave us (a file, a filter, a setting) is wrong; nothing was done."""

    heading = "入力のエラー"


class MembersFileError(InputError):
    """A member CSV cannot be read; the message names the file, and the row and column if any."""

    heading = "会員ファイルのエラー"


class OrdersFileError(InputError):
    """A 受注 file (B-Cart's order CSV export) cannot be read; the message names the file,
    and the row and column if any."""

    heading = "受注ファイルのエラー"


class FilterError(InputError):
    """A filter names an unknown column or operator, or a value of the wrong type."""

    heading = "絞込条件のエラー"


class SelectionError(InputError):
    """Checked member ids that are not in the filter's result."""

    heading = "会員の選択のエラー"


class SettingsError(InputError):
    """Shop settings, the environment or a campaign file hold a bad or missing key."""

    heading = "設定のエラー"


class UsageError(InputError):
    """The command line was typed wrong (argparse's complaint, in Japanese)."""

    heading = "使い方のエラー"


class TemplateError(InputError):
    """A template cannot be stored or rendered; names the template, the line and the field."""

    heading = "テンプレートのエラー"


class ComposeError(InputError):
    """A mail cannot be built for a member: an unencodable character, a CR/LF in a header."""

    heading = "メール作成のエラー"


class HygieneError(InputError):
    """The suppression list or a bounce mailbox was given something it cannot take."""

    heading = "配信停止リストのエラー"


class QuotaError(BcartnbError):
    """The monthly quota or its ledger stops the campaign."""

    heading = "配信数のエラー"


class QuotaExceededError(QuotaError):
    """The campaign is larger than what is left of this month's cap; nothing was sent."""

    heading = "メール配信上限数を超えるため送信できません"

    exit_code = 3
    #: The run's summary (the keys of ``run --json``) when a claimed campaign was refused
    #: before its run sent anything: what ``--json`` prints with exit 3.
    summary: dict[str, Any] | None = None


class LedgerError(QuotaError):
    """The ledger file is corrupt, locked, or written by a newer bcartnb; it was not touched."""

    heading = "配信記録ファイルのエラー"


class BcartApiError(BcartnbError):
    """The B-Cart API stayed unreachable, or refused a request, after its retries.

    An expired or wrong access token is a :class:`SettingsError` instead (the shop fixes
    ``BCARTNB_BCART_TOKEN``); neither ever carries the token itself.
    """

    heading = "BカートAPIのエラー"


class DeliveryError(BcartnbError):
    """Sending stopped; the journal says exactly who got the mail."""

    heading = "送信エラー"


class TransportError(DeliveryError):
    """The SMTP server could not be reached, refused TLS or AUTH; names host:port."""

    heading = "送信エラー"


class CampaignStateError(DeliveryError):
    """A campaign id is unknown, or a sent campaign would be repeated without asking."""

    heading = "配信の状態のエラー"


class IncompleteError(DeliveryError):
    """A run ended without finishing its campaign cleanly; raised only when asked to.

    Sending never raises for this (the summary says it); a papermill notebook or a script
    that must fail then calls :meth:`~bcartnb.delivery.DeliverySummary.raise_for_status`.
    ``exit_code`` is the summary's: 4 unfinished, 5 finished with refusals, 130 Ctrl-C.
    """

    heading = "送信が終わっていません"

    def __init__(self, *args: object, ja: str = "", exit_code: int = 4) -> None:
        super().__init__(*args, ja=ja)
        self.exit_code = exit_code
