"""One secret scan for every output bcartnb writes, over every secret it holds.

The promise (README, DESIGN.md "No secret in any output") covers the SMTP password, the B-Cart
access token, the unsubscribe links' signing secret and the IMAP password, in every output:
executed notebooks and their HTML, reports, logs, snapshots, exports, the command line's
stdout and stderr, error lines. A secret leaks in other clothes too, so each is looked for as
written, lower- and upper-cased, base64 (standard and URL-safe, at each of the three
alignments it can have inside a longer base64 text, and as SMTP AUTH PLAIN would send it),
URL-encoded, JSON-escaped and in hex.

Tests that produce an output run with :data:`SECRET_ENV` in the environment (the values are
distinctive, so a hit is never a coincidence) and hand what came out to
:func:`assert_no_secret`: bytes, text or paths (a folder is scanned file by file).
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterable, Mapping
from pathlib import Path
from urllib.parse import quote, quote_plus

__all__ = [
    "SECRETS",
    "SECRET_ENV",
    "assert_no_secret",
    "encoded_forms",
    "find_secrets",
    "secret_env",
]

# Mixed case, symbols that URL- and JSON-encoding change, long enough never to occur by chance.
SECRETS: Mapping[str, str] = {
    "SMTP password": "Smtp-Pw/7Qx+9Kd~Lm&3Vz%Rt",
    "B-Cart token": "BcartTok3nZq8WXr5Yp2Nv7Hs4Jd",
    "unsubscribe secret": "Unsub-Secret=Qp4Lz8Wm2Rx6Tn9Ks0-Fg7Hj3",
    "IMAP password": 'Imap-Pw"8Jx\\Cv5Bn#2Mk',
}
#: The environment that gives bcartnb every secret above.
SECRET_ENV: Mapping[str, str] = {
    "BCARTNB_SMTP_PASSWORD": SECRETS["SMTP password"],
    "BCARTNB_BCART_TOKEN": SECRETS["B-Cart token"],
    "BCARTNB_UNSUBSCRIBE_SECRET": SECRETS["unsubscribe secret"],
    "BCARTNB_IMAP_PASSWORD": SECRETS["IMAP password"],
}


def secret_env(**only: bool) -> dict[str, str]:
    """:data:`SECRET_ENV` less the variables given as False.

    ``secret_env(BCARTNB_IMAP_PASSWORD=False)``: all but the IMAP password.
    """
    return {k: v for k, v in SECRET_ENV.items() if only.get(k, True)}


def _b64_cores(data: bytes, alphabet: str) -> dict[str, bytes]:
    """The part of ``data``'s base64 that is the same wherever it starts in a longer text."""
    forms = {}
    for shift in range(3):
        encoded = base64.b64encode(b"\0" * shift + data)
        if alphabet == "urlsafe":
            encoded = encoded.translate(bytes.maketrans(b"+/", b"-_"))
        start = -(-shift * 4 // 3)  # the characters that still mix in what came before
        core = encoded.rstrip(b"=")[start:-2]  # and the last ones, which mix in what follows
        forms[f"base64 {alphabet} +{shift}"] = core
    return forms


def encoded_forms(secret: str, user: str = "shop") -> dict[str, bytes]:
    """Every form the secret is looked for in, by name."""
    raw = secret.encode("utf-8")
    forms = {
        "plain": raw,
        "lower-cased": secret.lower().encode(),
        "upper-cased": secret.upper().encode(),
        "URL-encoded": quote(secret, safe="").encode(),
        "URL-encoded (form)": quote_plus(secret).encode(),
        "JSON-escaped": json.dumps(secret)[1:-1].encode(),
        "hex": raw.hex().encode(),
        "AUTH PLAIN": base64.b64encode(b"\0" + user.encode() + b"\0" + raw),
        **_b64_cores(raw, "standard"),
        **_b64_cores(raw, "urlsafe"),
    }
    return forms


def find_secrets(data: bytes | str, secrets: Mapping[str, str] = SECRETS) -> list[tuple[str, str]]:
    """(secret, form) for each secret found in ``data``, in any of its forms."""
    blob = data.encode("utf-8", "surrogateescape") if isinstance(data, str) else data
    folded = blob.lower()
    hits = []
    for name, secret in secrets.items():
        for form, needle in encoded_forms(secret).items():
            # base64 and hex are case-sensitive; the rest is also looked for in any case
            sensitive = form.startswith(("base64", "AUTH", "hex"))
            if needle in blob or (not sensitive and needle.lower() in folded):
                hits.append((name, form))
                break
    return hits


def _outputs(outputs: Iterable[bytes | str | Path]) -> Iterable[tuple[str, bytes]]:
    for out in outputs:
        if isinstance(out, Path):
            files = sorted(p for p in out.rglob("*") if p.is_file()) if out.is_dir() else [out]
            for path in files:
                yield str(path), path.read_bytes()
        elif isinstance(out, str):
            yield "text", out.encode("utf-8", "surrogateescape")
        else:
            yield "bytes", out


def assert_no_secret(
    *outputs: bytes | str | Path,
    secrets: Mapping[str, str] = SECRETS,
    inputs: Iterable[Path] = (),
) -> int:
    """Fail naming the secret, its form and the output it is in; else how many were scanned.

    ``inputs``: files that hold a secret on purpose (a ``.env`` the test wrote) and are
    skipped when a folder is scanned.
    """
    skip = {str(p) for p in inputs}
    scanned = 0
    for where, data in _outputs(outputs):
        if where in skip:
            continue
        scanned += 1
        hits = find_secrets(data, secrets)
        assert not hits, f"{where}: " + ", ".join(f"the {n} ({form})" for n, form in hits)
    return scanned
