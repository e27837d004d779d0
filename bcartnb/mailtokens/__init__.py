"""What each mail carries that names it: the signed unsubscribe token, the VERP return path
and the Message-ID's tokens.

Compose writes the token and the Message-ID, delivery the return path; hygiene reads them
back from a bounce, a complaint or a click. The rules sit here, in the rules layer, so the
writers and the reader import them downward and none reaches into another stage:

======================================  ====================================================
:mod:`~bcartnb.mailtokens.tokens`       the signed unsubscribe token, and the one check of
                                        the secret that signs it and the VERP
:mod:`~bcartnb.mailtokens.tracking`     the signed click and open token
:mod:`~bcartnb.mailtokens.verp`         the VERP return path, our Message-IDs' shape, and
                                        how an id becomes a token in either
======================================  ====================================================
"""

from __future__ import annotations

from bcartnb.mailtokens.tokens import (
    MIN_SECRET_BITS,
    MIN_SECRET_CHARS,
    MIN_SECRET_DISTINCT,
    SECRET_ENV,
    TokenSigner,
    UnsubscribeToken,
    check_secret,
    parse,
    secret_bits,
)
from bcartnb.mailtokens.tracking import OPEN_LINK, TRAP_LINK, TrackSigner, TrackToken
from bcartnb.mailtokens.verp import (
    MailRef,
    VerpSigner,
    is_ours,
    message_token,
    parse_message_id,
    parse_verp,
)

__all__ = [
    "MIN_SECRET_BITS",
    "MIN_SECRET_CHARS",
    "MIN_SECRET_DISTINCT",
    "OPEN_LINK",
    "SECRET_ENV",
    "TRAP_LINK",
    "MailRef",
    "TokenSigner",
    "TrackSigner",
    "TrackToken",
    "UnsubscribeToken",
    "VerpSigner",
    "check_secret",
    "is_ours",
    "message_token",
    "parse",
    "parse_message_id",
    "parse_verp",
    "secret_bits",
]
