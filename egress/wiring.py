"""How an attempt's sandbox is wired to its door (egress/proxy.py): the sockets and the bridge
bound into it, the environment that points its programs at them, the prologue that starts
the bridge before the agent, and the `egress` event each reported connection becomes."""

from __future__ import annotations

import shlex
import tempfile
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from django.conf import settings

from egress.policy import Policy
from egress.proxy import Connection, Door
from jobs import events

PROXY_PORT = 3128
GATEWAY_PORT = 4000
INSIDE = "/run/agenthub"
BRIDGE = Path(__file__).with_name("bridge.py")
PROXY_URL = f"http://127.0.0.1:{PROXY_PORT}"
ENV = {
    **{name: PROXY_URL for name in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy")},
    "NO_PROXY": "127.0.0.1,localhost",
    "no_proxy": "127.0.0.1,localhost",
    # The model gateway, for the AI presets' base URLs: /gateway/<provider>.
    "AGENTHUB_GATEWAY_URL": f"http://127.0.0.1:{GATEWAY_PORT}/gateway",
}
# AGENTHUB_CA_BUNDLE inside, and the variables by which OpenSSL, Python's requests, curl, Node,
# git and pip find it.
CA_BUNDLE = f"{INSIDE}/ca-certificates.crt"
CA_VARIABLES = (
    "SSL_CERT_FILE",
    "REQUESTS_CA_BUNDLE",
    "CURL_CA_BUNDLE",
    "NODE_EXTRA_CA_CERTS",
    "GIT_SSL_CAINFO",
    "PIP_CERT",
)


def open_door(agent: Any) -> Door:
    """The attempt's door, serving; its sockets live in a short private directory (a Unix
    socket's path is limited to 107 bytes, which a deep data directory would exceed)."""
    directory = Path(tempfile.mkdtemp(prefix="agenthub-door-"))
    gateway = urlsplit(settings.AGENTHUB_GATEWAY_URL)
    return Door(
        directory,
        Policy.of(agent.egress, agent.egress_allowlist),
        (gateway.hostname or "127.0.0.1", gateway.port or 80),
    ).start()


def files(door: Door) -> dict[str, Path]:
    bundle = settings.AGENTHUB_CA_BUNDLE
    return {
        f"{INSIDE}/proxy.sock": door.proxy_socket,
        f"{INSIDE}/gateway.sock": door.gateway_socket,
        f"{INSIDE}/bridge.py": BRIDGE,
        **({CA_BUNDLE: Path(bundle)} if bundle else {}),
    }


def environment() -> dict[str, str]:
    """What points the sandbox's programs at its door, and at the certificates it trusts."""
    bundle = settings.AGENTHUB_CA_BUNDLE
    return {**ENV, **({name: CA_BUNDLE for name in CA_VARIABLES} if bundle else {})}


def prologue() -> str:
    """Starts the bridge; the agent's command follows on the next line."""
    pairs = [f"{PROXY_PORT}={INSIDE}/proxy.sock", f"{GATEWAY_PORT}={INSIDE}/gateway.sock"]
    return (
        f"python3 -I {INSIDE}/bridge.py {' '.join(shlex.quote(p) for p in pairs)} "
        '|| { echo "AgentHub: the egress bridge did not start" >&2; exit 97; }\n'
    )


def event(connection: Connection) -> events.Draft:
    where = f"{connection.host}:{connection.port}"
    what = f"{connection.method} {where}" if connection.method else where
    text = f"allowed {what}" if connection.allowed else f"refused {what}: {connection.reason}"
    return events.Draft(
        "egress",
        text,
        data={
            "host": connection.host,
            "port": connection.port,
            "allowed": connection.allowed,
            **({"method": connection.method} if connection.method else {}),
            **({"reason": connection.reason} if connection.reason else {}),
        },
    )
