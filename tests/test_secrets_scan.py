"""The secret scan itself (tests/secrets_scan.py): a scan that cannot fail would pass anything."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from urllib.parse import quote

import pytest
from secrets_scan import SECRETS, assert_no_secret, encoded_forms, find_secrets


@pytest.mark.parametrize("name", list(SECRETS))
def test_every_form_of_every_secret_is_found_inside_other_text(name: str) -> None:
    secret = SECRETS[name]
    raw = secret.encode()
    planted = {
        "plain": b"password=" + raw + b";",
        "lower-cased": b"x " + secret.lower().encode(),
        "quoted in JSON": json.dumps({"pw": secret}).encode(),
        "URL": b"https://x.example/?p=" + quote(secret, safe="").encode(),
        "hex": b"0x" + raw.hex().encode(),
    }
    for shift in range(3):  # a secret inside a longer base64 text, at each alignment
        blob = base64.b64encode(b"a" * shift + b"-" + raw + b"-tail")
        planted[f"base64 +{shift}"] = b"data:" + blob
        planted[f"urlsafe +{shift}"] = base64.urlsafe_b64encode(b"a" * shift + raw + b"-")
    for how, text in planted.items():
        assert [n for n, _ in find_secrets(text)] == [name], how
    assert find_secrets("見本商事 shop@example.co.jp " + secret[:-1]) == []


def test_clean_output_passes_and_a_planted_one_fails_naming_where(tmp_path: Path) -> None:
    (tmp_path / "report.html").write_text("<p>送信しました</p>", encoding="utf-8")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "log.txt").write_bytes(b"sent 3")
    assert assert_no_secret(tmp_path, "stdout", b"stderr") == 4
    leak = tmp_path / "sub" / "leak.json"
    leak.write_text(json.dumps({"token": SECRETS["B-Cart token"]}), encoding="utf-8")
    with pytest.raises(AssertionError, match=r"leak\.json: the B-Cart token"):
        assert_no_secret(tmp_path)
    assert assert_no_secret(tmp_path, inputs=[leak]) == 2
    assert set(encoded_forms("x")) >= {"plain", "JSON-escaped", "URL-encoded", "AUTH PLAIN"}
