"""Shared fixtures: every test gets its own settings, ledger and working directory."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import extras  # noqa: F401  (first: it reads BCARTNB_REQUIRE_ALL before any test clears it)
import pytest


@pytest.fixture(autouse=True)
def _isolated_env(
    tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> Iterator[None]:
    """No test reads the developer's ~/.local ledger, bcartnb.toml or .env."""
    home = tmp_path_factory.mktemp("home")
    for var in list(__import__("os").environ):
        if var.startswith("BCARTNB_"):
            monkeypatch.delenv(var)
    monkeypatch.setenv("XDG_DATA_HOME", str(home / "data"))
    monkeypatch.setenv("BCARTNB_CONFIG", str(home / "no-config.toml"))
    monkeypatch.delenv("BCARTNB_CONFIG")
    monkeypatch.chdir(home)
    yield


@pytest.fixture
def repo_root() -> Path:
    return Path(__file__).resolve().parent.parent


@pytest.fixture
def closed_port() -> Iterator[int]:
    """A port where a connection is refused, for the whole test.

    The socket stays bound but never listens: the kernel refuses connections to it, and
    no other process can take the port meanwhile (a port bound, closed and connected to
    later may be someone's server by then).
    """
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        yield int(sock.getsockname()[1])


# --- SMTP servers (tests/smtp_servers.py) ------------------------------------------------
# Real aiosmtpd servers on 127.0.0.1 with free ports. Delivery tests reuse these.

from collections.abc import Callable, Mapping  # noqa: E402

from smtp_servers import Faults, TestServer, TlsFiles, make_tls_files  # noqa: E402


@pytest.fixture(scope="session")
def tls_ca(tmp_path_factory: pytest.TempPathFactory) -> TlsFiles:
    """A throw-away CA (trustme) and a 127.0.0.1 certificate, shared by the session."""
    return make_tls_files(tmp_path_factory.mktemp("tls"))


@pytest.fixture
def smtp_server(tls_ca: TlsFiles) -> Iterator[Callable[..., TestServer]]:
    """Factory of started servers, all stopped after the test.

    ``smtp_server(faults=Faults(temp_fail=2), security="starttls", users={"shop": "pw"},
    auth_required=True, require_starttls=True, clock=ManualClock())``; every argument is
    optional. The server has ``.port``, ``.received``, ``.sessions``, ``.settings(...)``,
    ``.transport(...)``, ``.env()`` for a subprocess, ``.wait_for(n)``, ``.release()``.
    """
    servers: list[TestServer] = []

    def make(
        *,
        faults: Faults | None = None,
        security: str = "none",
        users: Mapping[str, str] | None = None,
        auth_required: bool = False,
        require_starttls: bool = False,
        clock: Callable[[], float] | None = None,
    ) -> TestServer:
        server = TestServer(
            faults=faults,
            security=security,
            tls=tls_ca if security != "none" else None,
            users=users,
            auth_required=auth_required,
            require_starttls=require_starttls,
            **({} if clock is None else {"clock": clock}),
        )
        servers.append(server.start())
        return server

    yield make
    for server in servers:
        server.stop()


# --- hypothesis ----------------------------------------------------------------------------
# No property fails because a loaded machine was slow: hypothesis's 200 ms deadline and its
# "too slow" health check are timing assertions. Each property sets its own max_examples.
from hypothesis import HealthCheck  # noqa: E402
from hypothesis import settings as _hypothesis_settings  # noqa: E402

_hypothesis_settings.register_profile(
    "bcartnb", deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
_hypothesis_settings.load_profile("bcartnb")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """A property's own ``@settings`` replaces the profile's, it does not add to it: one that
    names ``suppress_health_check`` (or a ``deadline``) turns the timing checks back on,
    and a loaded CI machine fails it for being slow. Refused at collection, by name."""
    for item in items:
        own = getattr(getattr(item, "obj", None), "_hypothesis_internal_use_settings", None)
        if own is None:
            continue
        if own.deadline is not None or HealthCheck.too_slow not in own.suppress_health_check:
            raise pytest.UsageError(
                f"{item.nodeid}: its @settings must keep deadline=None and suppress "
                "HealthCheck.too_slow (a timing check; see tests/conftest.py)"
            )
