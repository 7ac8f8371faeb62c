"""A throwaway Dovecot IMAP server for tests (Debian's dovecot-imapd, started with a private config)."""

from __future__ import annotations

import base64
import os
import pwd
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

CONFIG = """
protocols = imap
listen = 127.0.0.1
base_dir = {dir}/run
state_dir = {dir}/state
log_path = {dir}/dovecot.log
ssl = no
disable_plaintext_auth = no
auth_mechanisms = plain login
# a refused login is answered at once and never slows the next (no anvil penalty per IP): tests
# refuse logins on purpose, one after another, from 127.0.0.1
auth_failure_delay = 0
mail_location = maildir:{dir}/mail/%u
default_internal_user = dovecot
default_login_user = dovenull
first_valid_uid = 100
passdb {{
  driver = static
  args = password=secret
}}
userdb {{
  driver = static
  args = uid=vmail gid=vmail home={dir}/mail/%u
}}
service anvil {{
  unix_listener anvil-auth-penalty {{
    mode = 0
  }}
}}
service imap-login {{
  inet_listener imap {{
    port = {port}
  }}
  inet_listener imaps {{
    port = 0
  }}
}}
"""


OAUTH_CONFIG = CONFIG.replace(
    "auth_mechanisms = plain login",
    "auth_mechanisms = plain login xoauth2 oauthbearer",
).replace(
    """passdb {{
  driver = static""",
    """passdb {{
  driver = oauth2
  mechanisms = xoauth2 oauthbearer
  args = {dir}/dovecot-oauth2.conf.ext
}}
passdb {{
  mechanisms = plain login
  driver = static""",
)
# OAuth 2.0 tokens are JWTs checked locally: HS256 with the key in keys/, the mailbox in "email",
# the scope "mail" required
OAUTH_PASSDB = """introspection_mode = local
local_validation_key_dict = fs:posix:prefix={dir}/keys/
username_attribute = email
scope = mail
"""


def unavailable_reason() -> str | None:
    """Why a Dovecot server cannot be started here, or None when it can."""
    if shutil.which("dovecot") is None:
        return "Dovecot is not installed (apt-get install dovecot-imapd; .ci/run does this)"
    try:
        pwd.getpwnam("vmail")
    except KeyError:
        if os.geteuid() != 0:
            return "Dovecot needs a 'vmail' user, and creating one needs root"
        subprocess.run(["useradd", "-r", "-M", "-s", "/usr/sbin/nologin", "vmail"], check=True)
    return None


class Dovecot:
    """A private Dovecot instance on a loopback port; any user logs in with password 'secret'."""

    def __init__(self, folder: Path, port: int, jwt_key: bytes | None = None) -> None:
        """`jwt_key`: also take OAuth 2.0 tokens (XOAUTH2, OAUTHBEARER) signed with this key."""
        self.folder, self.port, self.jwt_key = folder, port, jwt_key

    def start(self) -> None:
        """Write the config, start the daemon and wait until it answers."""
        for sub in ("run", "state", "mail"):
            (self.folder / sub).mkdir(parents=True, exist_ok=True)
        shutil.chown(self.folder / "mail", "vmail", "vmail")
        conf = self.folder / "dovecot.conf"
        config = CONFIG
        if self.jwt_key is not None:
            config = OAUTH_CONFIG
            (self.folder / "dovecot-oauth2.conf.ext").write_text(
                OAUTH_PASSDB.format(dir=self.folder)
            )
            # looked up as shared/<azp:default>/<alg>/<kid:default>; the fs dict drops "shared/"
            keys = self.folder / "keys" / "default" / "HS256"
            keys.mkdir(parents=True, exist_ok=True)
            (keys / "default").write_bytes(base64.b64encode(self.jwt_key))
        conf.write_text(config.format(dir=self.folder, port=self.port))
        subprocess.run(
            ["dovecot", "-c", str(conf)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            check=True,
        )
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                    return
            except OSError:
                time.sleep(0.1)
        raise RuntimeError(f"dovecot did not start; see {self.folder / 'dovecot.log'}")

    def stop(self) -> None:
        """Stop the daemon."""
        pid_file = self.folder / "run" / "master.pid"
        if pid_file.exists():
            pid = int(pid_file.read_text().strip())
            os.kill(pid, signal.SIGTERM)
            for _ in range(50):
                try:
                    os.kill(pid, 0)
                except ProcessLookupError:
                    return
                time.sleep(0.1)
