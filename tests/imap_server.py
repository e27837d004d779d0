"""A real IMAP server for the tests: Debian's Dovecot, started on 127.0.0.1 with TLS and a password.

`make test` installs ``dovecot-imapd`` (as root, through apt, like Chromium for the browser
tests). Each server gets its own configuration, runtime folder, log and free ports, so it
never touches a system Dovecot: IMAPS (TLS from the start) and IMAP with STARTTLS, a
throw-away CA (trustme) whose certificate file a client names in ``SSL_CERT_FILE``, one
user with a plain password from a passwd-file, and its mail in a Maildir the test fills.
Running as root (CI), mail is owned by ``nobody``; otherwise by the current user.
"""

from __future__ import annotations

import mailbox
import os
import pwd
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import trustme
from extras import need_program

__all__ = ["DOVECOT", "ImapServer", "start_imap_server"]

DOVECOT = shutil.which("dovecot") or "/usr/sbin/dovecot"


def _free_ports() -> tuple[int, int]:
    """Two distinct free ports (the first is held while the second is picked).

    Dovecot binds them a moment later, so another process may take one first: then
    :func:`start_imap_server` tries again with two new ones.
    """
    with socket.socket() as a, socket.socket() as b:
        a.bind(("127.0.0.1", 0))
        b.bind(("127.0.0.1", 0))
        return int(a.getsockname()[1]), int(b.getsockname()[1])


#: Dovecot's words when a port it was given is taken meanwhile.
_PORT_TAKEN = "Address already in use"


@dataclass
class ImapServer:
    root: Path
    user: str
    password: str
    imaps_port: int
    imap_port: int
    ca_file: Path
    maildir: Path
    process: subprocess.Popen[bytes]
    owner: tuple[int, int]

    def url(self, *, tls: bool = True, folder: str = "INBOX") -> str:
        scheme, port = ("imaps", self.imaps_port) if tls else ("imap", self.imap_port)
        return f"{scheme}://{self.user}@127.0.0.1:{port}/{folder}"

    def add(self, raws: list[bytes]) -> None:
        """Deliver mails into the user's INBOX, as the mail user."""
        box = mailbox.Maildir(self.maildir, create=True)
        for raw in raws:
            box.add(raw)
        box.close()
        for path in [self.maildir, *self.maildir.rglob("*")]:
            os.chown(path, *self.owner)

    def log(self) -> str:
        path = self.root / "dovecot.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=10)
        if self.process.stderr is not None:
            self.process.stderr.close()


def start_imap_server(root: Path, *, user: str = "shop", password: str = "s3cret-pw") -> ImapServer:
    root.mkdir(parents=True, exist_ok=True)
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1", "localhost")
    ca_file = root / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    cert_file, key_file = root / "cert.pem", root / "key.pem"
    cert.cert_chain_pems[0].write_to_path(str(cert_file))
    cert.private_key_pem.write_to_path(str(key_file))
    if os.geteuid() == 0:
        nobody = pwd.getpwnam("nobody")
        owner = (nobody.pw_uid, nobody.pw_gid)
        login_user, internal_user = "dovenull", "dovecot"
    else:
        owner = (os.getuid(), os.getgid())
        me = pwd.getpwuid(os.getuid()).pw_name
        login_user = internal_user = me
    home = root / "home" / user
    maildir = home / "Maildir"
    home.mkdir(parents=True, exist_ok=True)
    mailbox.Maildir(maildir, create=True).close()
    for path in [root / "home", home, *home.rglob("*")]:
        os.chown(path, *owner)
    os.chmod(root, 0o755)
    (root / "passwd").write_text(f"{user}:{{PLAIN}}{password}::::::\n", encoding="utf-8")
    for attempt in range(3):
        try:
            return _start(root, user, password, owner, login_user, internal_user, ca_file)
        except RuntimeError as err:
            if _PORT_TAKEN not in str(err) or attempt == 2:
                raise
    raise AssertionError("unreachable")


def _start(
    root: Path,
    user: str,
    password: str,
    owner: tuple[int, int],
    login_user: str,
    internal_user: str,
    ca_file: Path,
) -> ImapServer:
    """Dovecot on two free ports, once it listens on both."""
    cert_file, key_file = root / "cert.pem", root / "key.pem"
    maildir = root / "home" / user / "Maildir"
    imaps_port, imap_port = _free_ports()
    (root / "dovecot.log").unlink(missing_ok=True)  # a failed attempt's log is not this one's
    conf = root / "dovecot.conf"
    conf.write_text(
        f"""
base_dir = {root}/run
state_dir = {root}/state
log_path = {root}/dovecot.log
instance_name = bcartnb-test-{imaps_port}
protocols = imap
listen = 127.0.0.1
ssl = required
ssl_cert = <{cert_file}
ssl_key = <{key_file}
disable_plaintext_auth = yes
auth_mechanisms = plain
default_login_user = {login_user}
default_internal_user = {internal_user}
first_valid_uid = {owner[0]}
last_valid_uid = {owner[0]}
mail_location = maildir:~/Maildir
passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%u {root}/passwd
}}
userdb {{
  driver = static
  args = uid={owner[0]} gid={owner[1]} home={root}/home/%u
}}
service imap-login {{
  inet_listener imap {{
    address = 127.0.0.1
    port = {imap_port}
  }}
  inet_listener imaps {{
    address = 127.0.0.1
    port = {imaps_port}
    ssl = yes
  }}
}}
service anvil {{
  chroot =
}}
service imap-login {{
  chroot =
}}
""",
        encoding="utf-8",
    )
    need_program(DOVECOT, "dovecot-imapd")
    process = subprocess.Popen(
        [DOVECOT, "-F", "-c", str(conf)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    server = ImapServer(
        root, user, password, imaps_port, imap_port, ca_file, maildir, process, owner
    )
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if process.poll() is not None:
            err = process.stderr.read().decode(errors="replace") if process.stderr else ""
            server.stop()  # reaped, its pipe closed
            raise RuntimeError(f"dovecot exited: {err}\n{server.log()}")
        try:
            with (
                socket.create_connection(("127.0.0.1", imaps_port), timeout=1),
                socket.create_connection(("127.0.0.1", imap_port), timeout=5) as plain,
            ):
                greeting = plain.recv(200)
        except OSError:
            greeting = b""
        # Dovecot's own greeting, not a port that answers: its login processes start once
        # every listener is bound (a port taken meanwhile ends it before they do)
        if b"Dovecot" in greeting and process.poll() is None:
            return server
        time.sleep(0.1)
    server.stop()
    raise RuntimeError(f"dovecot did not listen in 20 s\n{server.log()}")
