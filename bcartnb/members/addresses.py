"""The address rules: what is trimmed around an address, and which addresses can be mailed.

An address is valid when B-Cart can register it and email-validator accepts it; the one
rule is here, vectorised (Arrow compute, one pass a step), for the audience and delivery to
call: a row loop over 100,000 members would cost seconds, and the widgets re-run the
audience on every click.
"""

from __future__ import annotations

import functools
import re
from typing import Any, Final

import numpy as np
import pandas as pd
import pyarrow as pa  # type: ignore[import-untyped]
import pyarrow.compute as pc  # type: ignore[import-untyped]

from bcartnb.members.columns import SPACES

__all__ = [
    "address_codes",
    "check_addresses",
    "is_valid_domain",
    "normalize_address",
    "normalize_addresses",
    "to_arrow_strings",
]

_ATEXT: Final = r"A-Za-z0-9!#$%&'*+/=?^_{|}~-"
_LOCAL: Final = rf"[{_ATEXT}]+(?:\.[{_ATEXT}]+)*"
_LABEL: Final = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
# An address whose local part B-Cart accepts and whose domain is plainly a DNS name
# (LDH labels of at most 63, a letters-only TLD). Anything of that shape that email-validator
# could still refuse (an R-LDH label like "ab--c", a special-use TLD, a length limit) is
# caught by the checks in check_addresses; the property tests hold the two to each other.
_FAST_ADDRESS: Final = rf"{_LOCAL}@(?:{_LABEL}\.)+[A-Za-z]{{2,63}}"
# The local part is ours to judge; an ASCII domain goes to email-validator (which would take
# 例え.jp as IDNA, but B-Cart registers no full-width character anywhere in an address).
_SHAPE: Final = rf"{_LOCAL}@[A-Za-z0-9.-]+"
_LOCAL_MAX: Final = 64
_ADDRESS_MAX: Final = 254
_DOMAIN_MAX: Final = 253


def normalize_address(address: str | None) -> str:
    """The address as mail goes to it: surrounding ASCII and full-width (U+3000) spaces trimmed.

    People paste addresses from Japanese documents, where a trailing full-width space is
    invisible; B-Cart trims them too. ``None`` is the empty address.
    """
    if address is None or (isinstance(address, float) and np.isnan(address)):
        return ""
    return str(address).strip(SPACES)


def normalize_addresses(emails: pd.Series) -> pd.Series:
    """:func:`normalize_address` for a whole column at once (blank stays blank, never NaN)."""
    text = emails.astype("str").fillna("")
    return text.str.strip(SPACES)


@functools.lru_cache(maxsize=1 << 16)
def is_valid_domain(domain: str) -> bool:
    """email-validator's full syntax check of a domain (no DNS), cached per distinct domain.

    It costs about 27 µs a call, so it runs once per domain the fast regex could not settle;
    the local part is checked by a vectorised regex against B-Cart's narrower rules.
    """
    from email_validator import EmailNotValidError, validate_email

    try:
        validate_email(
            f"a@{domain}",
            check_deliverability=False,
            allow_smtputf8=False,
            allow_quoted_local=False,
            allow_domain_literal=False,
        )
    except EmailNotValidError:
        return False
    return True


@functools.cache
def _special_tail_re() -> str:
    """Special-use names (``.test``, ``.local`` ...) that email-validator refuses, read from it."""
    from email_validator import SPECIAL_USE_DOMAIN_NAMES

    return rf"\.(?:{'|'.join(re.escape(d) for d in SPECIAL_USE_DOMAIN_NAMES)})$"


_TAIL: Final = 12  # the longest special-use name with its dot, and some
_OK, _EMPTY, _INVALID = 0, 1, 2
_CODES: Final = (None, "empty_address", "invalid_address")


def _bools(result: Any) -> np.ndarray[Any, np.dtype[np.bool_]]:
    return np.asarray(result.to_numpy(zero_copy_only=False), dtype=bool)


def to_arrow_strings(column: pd.Series) -> pa.Array:
    """A text column as one Arrow string array, missing values null: zero-copy for pandas'
    Arrow-backed ``str`` dtype, converted for anything else (object, ``string[python]``)."""
    try:
        raw = pa.array(column, from_pandas=True)
    except (pa.ArrowInvalid, pa.ArrowTypeError):
        raw = pa.array(column.astype("str"), from_pandas=True)
    if not (pa.types.is_string(raw.type) or pa.types.is_large_string(raw.type)):
        raw = pa.array(column.astype("str"), from_pandas=True, type=pa.large_string())
    if isinstance(raw, pa.ChunkedArray):  # pragma: no cover - pa.array gives one chunk
        raw = raw.combine_chunks()
    return raw


def address_codes(emails: pd.Series) -> tuple[np.ndarray[Any, np.dtype[np.int8]], pa.Array]:
    """The vectorised core of :func:`check_addresses`: per row 0 (valid), 1 (empty) or 2
    (invalid), and the trimmed addresses as an Arrow array (for duplicate detection).

    Each step is one pass of Arrow compute (RE2 regexes, no Python per row); email-validator
    runs once per distinct domain that the fast regex could not settle (rare shapes: a
    ``--`` anywhere, a special-use TLD, anything but a plain LDH domain).
    """
    text = pc.fill_null(pc.utf8_trim(to_arrow_strings(emails), SPACES), "")
    lengths = pc.utf8_length(text).to_numpy(zero_copy_only=False)
    empty = lengths == 0
    fast = _bools(pc.match_substring_regex(text, f"^(?:{_FAST_ADDRESS})$"))
    at = pc.find_substring(text, "@").to_numpy(zero_copy_only=False)
    within = (lengths <= _ADDRESS_MAX) & (at <= _LOCAL_MAX)
    if fast.any():
        tail = pc.utf8_slice_codeunits(text, -_TAIL)
        odd = _bools(pc.match_substring(text, "--")) | _bools(
            pc.match_substring_regex(tail, _special_tail_re(), ignore_case=True)
        )
        slow = (~fast | odd) & ~empty & within
        valid = fast & ~odd & within
    else:
        slow = ~empty & within
        valid = np.zeros(len(text), dtype=bool)
    if slow.any():
        idx = np.flatnonzero(slow)
        candidates = pc.take(text, pa.array(idx))
        shaped = _bools(pc.match_substring_regex(candidates, f"^(?:{_SHAPE})$"))
        idx = idx[shaped]
        if len(idx):
            domains = pc.utf8_lower(
                pc.replace_substring_regex(pc.take(text, pa.array(idx)), "^[^@]*@", "")
            )
            encoded = pc.dictionary_encode(domains)
            verdict = np.array(
                [
                    len(d) <= _DOMAIN_MAX and is_valid_domain(d)
                    for d in encoded.dictionary.to_pylist()
                ],
                dtype=bool,
            )
            valid[idx] = verdict[encoded.indices.to_numpy(zero_copy_only=False)]
    codes = np.where(valid, _OK, _INVALID).astype(np.int8)
    codes[empty] = _EMPTY
    return codes, text


def check_addresses(emails: pd.Series) -> pd.Series:
    """The reason each address cannot be mailed: ``empty_address``, ``invalid_address`` or <NA>.

    Addresses are trimmed first (:func:`normalize_address`). Valid means both B-Cart can
    register it (local part only ``A-Za-z0-9`` and ``.!#$%&'*+-/=?^_{|}~``, no leading,
    trailing or doubled dot, ASCII only) and email-validator accepts it (no DNS, no SMTPUTF8,
    no quoted local part). The result has the index of ``emails`` and the ``string`` dtype.
    """
    codes, _ = address_codes(emails)
    reason = np.array(_CODES, dtype=object)[codes]
    return pd.Series(reason, index=emails.index, dtype="string", name="reason")
