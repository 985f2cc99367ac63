"""A repository's fetch and push credentials, as the host's git gets them: an HTTPS token (sent
as HTTP Basic auth) or an SSH private key. Stored encrypted (Repository.credentials, a
SealedJSONField) and write-only; here they become git options for the length of one call.

The token reaches git through GIT_CONFIG_COUNT/KEY/VALUE in its environment, never on a command
line (where `ps` shows it to every user of the host); the key through a 0600 file that lives
only while the call runs. Neither is ever logged: git does not print headers or keys, and what
it says about URLs goes through workspace.redacted.
"""

from __future__ import annotations

import base64
import os
import shlex
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

KINDS = ("token", "ssh_key")
FIELDS = frozenset({"token", "username", "ssh_key"})


@dataclass(frozen=True)
class Auth:
    token: str = ""
    username: str = ""  # for the token; most hosts take any (GitHub: x-access-token)
    ssh_key: str = ""
    known_hosts: str = ""  # where SSH host keys are kept (trusted on first use)
    ca_bundle: str = ""  # the certificates HTTPS remotes are checked against; "": git's own

    @property
    def kind(self) -> str:
        return "token" if self.token else "ssh_key" if self.ssh_key else ""


def of(credentials: Any, *, known_hosts: str = "", ca_bundle: str = "") -> Auth:
    """A repository's stored credentials (an empty object: none)."""
    given = credentials if isinstance(credentials, dict) else {}
    return Auth(
        token=str(given.get("token", "")),
        username=str(given.get("username", "")),
        ssh_key=str(given.get("ssh_key", "")),
        known_hosts=known_hosts,
        ca_bundle=ca_bundle,
    )


def problem(credentials: Any) -> str:
    """Why `credentials` are not fetch and push credentials, or ""."""
    if not isinstance(credentials, dict):
        return 'Expected an object: {"token": "..."} or {"ssh_key": "-----BEGIN ..."}.'
    if unknown := sorted(set(credentials) - FIELDS):
        return f"Unknown field(s) {', '.join(unknown)}: give token (and username) or ssh_key."
    if not all(isinstance(v, str) for v in credentials.values()):
        return "Every value is a string."
    if credentials.get("token") and credentials.get("ssh_key"):
        return "Give a token or an SSH key, not both."
    key = credentials.get("ssh_key", "")
    if key and "PRIVATE KEY-----" not in key:
        return "ssh_key is not a private key (-----BEGIN … PRIVATE KEY-----)."
    if any(c in credentials.get("username", "") for c in ":\n\r"):
        return "username may not hold ':' or line breaks."
    return ""


@contextmanager
def git_options(auth: Auth | None, ssh_command: str) -> Iterator[tuple[list[str], dict[str, str]]]:
    """The `-c` options and environment variables that give one git call these credentials;
    `ssh_command` is the hardened one they extend."""
    if auth is None:
        yield [], {}
        return
    options: list[str] = []
    config: list[tuple[str, str]] = []
    if auth.ca_bundle:
        config.append(("http.sslCAInfo", auth.ca_bundle))
    if auth.token:
        pair = f"{auth.username or 'agenthub'}:{auth.token}".encode()
        header = f"Authorization: Basic {base64.b64encode(pair).decode()}"
        config.append(("http.extraHeader", header))
    env = {"GIT_CONFIG_COUNT": str(len(config))}
    for n, (key, value) in enumerate(config):
        env[f"GIT_CONFIG_KEY_{n}"], env[f"GIT_CONFIG_VALUE_{n}"] = key, value
    if not auth.ssh_key:
        yield options, env
        return
    with tempfile.TemporaryDirectory(prefix="agenthub-ssh-") as directory:
        key_file = os.path.join(directory, "key")
        descriptor = os.open(key_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(descriptor, "w") as written:
            written.write(auth.ssh_key.strip() + "\n")
        ssh = [
            *shlex.split(ssh_command),
            "-i",
            key_file,
            "-o",
            "IdentitiesOnly=yes",
            "-o",
            "StrictHostKeyChecking=accept-new",
            *(["-o", f"UserKnownHostsFile={auth.known_hosts}"] if auth.known_hosts else []),
        ]
        yield [*options, "-c", f"core.sshCommand={shlex.join(ssh)}"], env
