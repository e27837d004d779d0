"""Where mail goes and how hard it is pushed: the ``[smtp]`` and ``[delivery]`` sections.

Each number is checked by the dataclass itself, so a bad value is refused wherever it comes
from (the file, the environment, a papermill parameter, a keyword argument) before anything
is reserved or sent. The SMTP password comes from the environment only
(``BCARTNB_SMTP_PASSWORD``): a TOML file would end up in a repository.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from bcartnb.exceptions import SettingsError
from bcartnb.settings.checks import in_range, is_local, port_number, read_section

__all__ = [
    "SECURITY_MODES",
    "DeliverySettings",
    "SmtpSettings",
    "delivery_from_file",
    "smtp_from_environment",
    "smtp_from_file",
    "smtp_settings",
]

SECURITY_MODES = ("none", "starttls", "ssl")
#: The keys of ``[smtp]`` and ``[delivery]`` and their kinds, in the order they are checked.
_SMTP_KINDS: dict[str, type] = {
    "host": str,
    "port": int,
    "security": str,
    "user": str,
    "allow_plaintext_auth": bool,
    "timeout": float,
}
_DELIVERY_KINDS: dict[str, type] = {
    "connections": int,
    "rate_per_hour": int,
    "retries": int,
    "rate_per_second": float,
    "backoff": float,
}


@dataclass(frozen=True)
class SmtpSettings:
    """Where mail goes. AUTH is used only when ``user`` is set: a password alone logs in nobody."""

    host: str = "127.0.0.1"
    port: int = 8025
    security: str = "none"
    user: str | None = None
    password: str | None = field(default=None, repr=False)
    timeout: float = 30.0
    allow_plaintext_auth: bool = False

    def __post_init__(self) -> None:
        if not self.host or any(ch.isspace() or ch == "\0" for ch in self.host):
            raise SettingsError(
                f"[smtp] host must be a host name, not {self.host!r}",
                ja=f"設定 [smtp] host がホスト名になっていません（{self.host!r}）。",
            )
        in_range("[smtp] port", self.port, 1, 65535, integer=True)
        if self.security not in SECURITY_MODES:
            raise SettingsError(
                f"[smtp] security must be one of {', '.join(SECURITY_MODES)}, "
                f"not {self.security!r}",
                ja="設定 [smtp] security は none・starttls・ssl のどれかにしてください"
                f"（{self.security!r} は使えません）。",
            )
        in_range("[smtp] timeout", self.timeout, 0.1, 3600, unit=" seconds")
        if (
            self.user
            and self.security == "none"
            and not self.allow_plaintext_auth
            and not is_local(self.host)
        ):
            # AUTH PLAIN over a plain connection hands the password to anyone on the path
            raise SettingsError(
                f"[smtp] user {self.user!r} would log in to {self.host} without encryption: "
                'set security = "starttls" (port 587) or "ssl" (port 465); '
                "allow_plaintext_auth = true only for a trusted network",
                ja=f"暗号化なしの接続で {self.host} に SMTP のユーザー {self.user!r}"
                " のパスワードを送ることになります。"
                'security を "starttls"（ポート587）か "ssl"（ポート465）にしてください。',
            )

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"


@dataclass(frozen=True)
class DeliverySettings:
    """How hard we push the SMTP server; the defaults suit a shared host."""

    connections: int = 4
    rate_per_second: float | None = None
    rate_per_hour: int | None = None
    retries: int = 6
    backoff: float = 30.0

    def __post_init__(self) -> None:
        # checked here, so a bad number is refused wherever it comes from (the file, a
        # papermill parameter, a keyword argument) before anything is reserved or marked
        in_range("[delivery] connections", self.connections, 1, 64, integer=True)
        if self.rate_per_second is not None:
            in_range("[delivery] rate_per_second", self.rate_per_second, 0.01, 10000)
        if self.rate_per_hour is not None:
            in_range("[delivery] rate_per_hour", self.rate_per_hour, 1, 10_000_000, integer=True)
        in_range("[delivery] retries", self.retries, 0, 20, integer=True)
        in_range("[delivery] backoff", self.backoff, 0, 3600, unit=" seconds")


def smtp_from_file(data: Mapping[str, Any], where: str) -> dict[str, Any]:
    """The ``[smtp]`` table's keys, typed; the modes and ranges are SmtpSettings' to check."""
    convert = {"port": lambda port: port_number(str(port), where), "user": lambda u: u or None}
    return read_section(data, "smtp", _SMTP_KINDS, where, convert)


def delivery_from_file(data: Mapping[str, Any], where: str) -> dict[str, Any]:
    """The ``[delivery]`` table's keys, typed; ranges are checked by DeliverySettings."""
    return read_section(data, "delivery", _DELIVERY_KINDS, where)


def smtp_from_environment(smtp_kw: dict[str, Any], envd: Mapping[str, str]) -> None:
    """``BCARTNB_SMTP_*`` over the file's ``[smtp]``; the password comes only from here."""
    if envd.get("BCARTNB_SMTP_HOST"):
        smtp_kw["host"] = envd["BCARTNB_SMTP_HOST"]
    if envd.get("BCARTNB_SMTP_PORT"):
        smtp_kw["port"] = port_number(envd["BCARTNB_SMTP_PORT"], "BCARTNB_SMTP_PORT")
    if envd.get("BCARTNB_SMTP_SECURITY"):
        smtp_kw["security"] = envd["BCARTNB_SMTP_SECURITY"]
    if "BCARTNB_SMTP_USER" in envd:
        smtp_kw["user"] = envd["BCARTNB_SMTP_USER"] or None
    if envd.get("BCARTNB_SMTP_PASSWORD"):
        smtp_kw["password"] = envd["BCARTNB_SMTP_PASSWORD"]


def smtp_settings(smtp_kw: dict[str, Any]) -> SmtpSettings:
    """SmtpSettings from what the file and the environment said: the mode in lower case, and
    the port its mode implies (587 for starttls, 465 for ssl) when a host but no port is set."""
    # the modes themselves are checked once, by SmtpSettings (with the file named by the caller)
    security = smtp_kw.get("security", "none").lower()
    smtp_kw["security"] = security
    if "port" not in smtp_kw and security in ("starttls", "ssl") and smtp_kw.get("host"):
        smtp_kw["port"] = 465 if security == "ssl" else 587
    return SmtpSettings(**smtp_kw)
