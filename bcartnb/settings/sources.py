"""Where settings are read from: the shop's TOML file and its ``.env``, read safely.

A settings or campaign file named by mistake may be a folder, ``/dev/zero``, a FIFO or not
UTF-8; each is refused with one line naming the file (and the line, for bytes that are not
UTF-8) rather than a traceback or a read that never ends. ``.env`` holds the secrets (the SMTP
password, the B-Cart token, the unsubscribe secret), which are read from the environment
only: a TOML file or a papermill parameter would end up in a repository or an executed
notebook.
"""

from __future__ import annotations

import io
import os
import re
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from bcartnb.exceptions import SettingsError
from bcartnb.files import open_regular, read_regular
from bcartnb.settings.shop import find_shop

__all__ = [
    "MAX_TOML_BYTES",
    "UNSUBSCRIBE_SECRET_ENV",
    "config_path",
    "parse_toml",
    "read_dotenv",
    "read_toml",
]

#: Where the unsubscribe links' signing secret comes from (bcartnb.mailtokens.tokens).
UNSUBSCRIBE_SECRET_ENV = "BCARTNB_UNSUBSCRIBE_SECRET"
_FILE_NAMES_JA = {"settings file": "設定ファイル", "campaign file": "キャンペーンファイル"}
#: No shop writes a settings or campaign file this large; past it, something else was named.
MAX_TOML_BYTES = 1 << 20


def config_path(env: Mapping[str, str], path: str | os.PathLike[str] | None) -> Path | None:
    """The settings file: the one named, else ``BCARTNB_CONFIG``, else the shop found upward."""
    if path is not None:
        return Path(path)
    if env.get("BCARTNB_CONFIG"):
        return Path(env["BCARTNB_CONFIG"])
    return find_shop()


def read_dotenv(env: dict[str, str], path: str | os.PathLike[str] | None = None) -> None:
    """``.env`` in the working directory, then the one in the shop folder (beside the settings
    file ``path``, else the one found as :func:`~bcartnb.settings.load_settings` finds it), so
    the secrets are found from any subfolder; neither overrides a variable already set."""
    _read_env_file(env, Path.cwd() / ".env")
    config = config_path(env, path)
    if config is not None:
        _read_env_file(env, config.parent / ".env")


def _read_env_file(env: dict[str, str], path: Path) -> None:
    try:
        raw = read_regular(path, ".env ファイル", SettingsError)  # a FIFO would block
    except (FileNotFoundError, IsADirectoryError):
        return
    except OSError as err:
        raise SettingsError(
            f"{path}: cannot read .env: {err.strerror or err}",
            ja=f".env ファイル（{path}）を読めません（{err.strerror or err}）。",
        ) from err
    text = _utf8(raw, path, ".env", ".env ファイル", encoding="utf-8-sig")
    from dotenv import dotenv_values

    for key, value in dotenv_values(stream=io.StringIO(text)).items():
        if value is not None and key not in env:
            env[key] = value


def _utf8(raw: bytes, path: Path, what: str, name_ja: str, *, encoding: str = "utf-8") -> str:
    """``raw`` as text, or the error naming the line that is not UTF-8 (an editor shows lines,
    not byte offsets)."""
    try:
        return raw.decode(encoding)
    except UnicodeDecodeError as err:
        line = raw[: err.start].count(b"\n") + 1
        raise SettingsError(
            f"{path}: line {line}: {what} is not UTF-8 text",
            ja=f"{name_ja}（{path}）の {line} 行目が UTF-8 の文字ではありません。",
        ) from None


def read_toml(path: Path, what: str) -> dict[str, Any]:
    """A settings or campaign file (``what``), refusing what is not a small regular file.

    A directory, ``/dev/zero`` or a FIFO named by mistake would otherwise raise a traceback or
    be read forever; bytes that are not UTF-8 are named, not a UnicodeDecodeError.
    """
    name = _FILE_NAMES_JA.get(what, what)
    try:
        with open_regular(path, name, SettingsError) as fh:  # not a FIFO, not /dev/zero
            raw = fh.read(MAX_TOML_BYTES + 1)
    except FileNotFoundError as err:
        raise SettingsError(
            f"{path}: {what} not found", ja=f"{name}が見つかりません: {path}"
        ) from err
    except IsADirectoryError as err:
        raise SettingsError(
            f"{path}: the {what} is a directory, not a file",
            ja=f"{path} はフォルダです（{name}のパスを確認してください）。",
        ) from err
    except OSError as err:
        raise SettingsError(
            f"{path}: cannot read the {what}: {err.strerror}",
            ja=f"{path} を読めません（{err.strerror}）。",
        ) from err
    if len(raw) > MAX_TOML_BYTES:
        raise SettingsError(
            f"{path}: the {what} is larger than {MAX_TOML_BYTES:,} bytes",
            ja=f"{path} が大きすぎます（{MAX_TOML_BYTES:,} バイトまで）。",
        )
    return parse_toml(_utf8(raw, path, f"the {what}", name), path, what)


def parse_toml(text: str, path: Path, what: str) -> dict[str, Any]:
    """``text`` of the settings or campaign file ``path`` as TOML, or the error naming it."""
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        name = _FILE_NAMES_JA.get(what, what)
        raise SettingsError(
            f"{path}: not valid TOML: {err}",
            ja=f"{name}（{path}）の{_toml_position_ja(str(err))}が TOML として正しくありません。",
        ) from err


#: Where tomllib says it stopped: "(at line 3, column 7)" or "(at end of document)".
_TOML_AT = re.compile(r"\(at (?:line (?P<line>\d+), column (?P<column>\d+)|end of document)\)")


def _toml_position_ja(message: str) -> str:
    """Where a TOML error is, in Japanese, as the English half gives it (an editor shows
    lines): ``3 行目 7 文字目``, ``終わり``, or ``書き方`` when tomllib does not say."""
    found = _TOML_AT.search(message)
    if found is None:
        return "書き方"
    if found["line"] is None:
        return "終わり"
    return f" {found['line']} 行目 {found['column']} 文字目"
