"""Egress: the policy, the per-attempt door (real Unix sockets, real TCP upstreams), and a real
job on each backend whose allowlist lets one local test host through and refuses another, both
as `egress` events."""

from __future__ import annotations

import hashlib
import http.server
import ipaddress
import os
import socket
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from django.conf import settings
from django.core.exceptions import ValidationError

from egress.policy import REGISTRIES, Egress, Policy, parse_allowlist, validate_allowlist
from egress.proxy import Door
from jobs.models import Job
from tests.conftest import shell_agent

# --- the policy ------------------------------------------------------------------------------


def test_an_allowlist_reads_hosts_ports_methods_wildcards_and_the_registries():
    rules = parse_allowlist(
        "# comment\npypi.org\n*.github.com:443\nGET,head example.com:80\n[::1]:8080\nregistries\n"
    )
    policy = Policy(Egress.ALLOWLIST, tuple(rules))
    assert policy.decide("pypi.org", 443).allowed
    assert policy.decide("api.github.com", 443).allowed
    assert not policy.decide("api.github.com", 80).allowed
    assert policy.decide("example.com", 80, "GET").allowed
    assert policy.decide("example.com", 80, "HEAD").allowed
    refused = policy.decide("example.com", 80, "POST")
    assert not refused.allowed and "POST to example.com:80" in refused.reason
    assert policy.decide("::1", 8080).allowed
    assert all(policy.decide(host, 443).allowed for host in REGISTRIES)
    assert "GET,HEAD example.com:80" in policy.describe()


@pytest.mark.parametrize(
    ("text", "error"),
    [
        ("example.com:99999", "line 1: the port '99999'"),
        ("GET POST example.com", "line 1 ('GET POST example.com')"),
        ("FETCH example.com", "unknown method FETCH"),
        ("ok.org\nhttp://x/y", "line 2"),
    ],
)
def test_a_wrong_allowlist_line_is_named(text, error):
    with pytest.raises(ValidationError, match=error.replace("(", r"\(").replace(")", r"\)")):
        validate_allowlist(text)


def test_none_refuses_and_open_allows_but_private_addresses_need_a_rule_naming_them():
    assert not Policy(Egress.NONE).decide("pypi.org", 443).allowed
    open_ = Policy(Egress.OPEN)
    assert open_.decide("anything.example", 443).allowed
    assert open_.check_address("x", ipaddress.ip_address("93.184.216.34")).allowed
    for private in ("127.0.0.1", "10.1.2.3", "169.254.169.254", "::1"):
        decision = open_.check_address("x", ipaddress.ip_address(private))
        assert not decision.allowed and "which no rule names" in decision.reason
    named = Policy.of(Egress.ALLOWLIST, "db.internal:5432\n*.internal")
    assert named.check_address("db.internal", ipaddress.ip_address("10.0.0.5")).allowed
    # A wildcard never opens private addresses.
    assert not named.check_address("x.internal", ipaddress.ip_address("10.0.0.5")).allowed


# --- the door --------------------------------------------------------------------------------


class _Hello(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802
        body = f"hello from {self.server.server_address[0]} {self.path}".encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_POST = do_GET  # noqa: N815

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def hosts() -> Iterator[dict[str, int]]:
    """Two local test hosts: 127.0.0.2 and 127.0.0.3, each an HTTP server on a port of its own."""
    servers = {}
    for address in ("127.0.0.2", "127.0.0.3"):
        server = http.server.ThreadingHTTPServer((address, 0), _Hello)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers[address] = server
    yield {address: server.server_address[1] for address, server in servers.items()}
    for server in servers.values():
        server.shutdown()
        server.server_close()


def through(path: Path, request: bytes) -> bytes:
    with socket.socket(socket.AF_UNIX) as client:
        client.settimeout(10)
        client.connect(str(path))
        client.sendall(request)
        answer = b""
        while chunk := client.recv(65536):
            answer += chunk
        return answer


@pytest.fixture
def door(hosts) -> Iterator[Door]:
    allowed = hosts["127.0.0.2"]
    opened = Door(
        Path(tempfile.mkdtemp(prefix="agenthub-door-test-")),
        Policy.of(Egress.ALLOWLIST, f"127.0.0.2:{allowed}"),
        ("127.0.0.2", allowed),  # stands in for AgentHub's web server
    ).start()
    yield opened
    opened.stop()
    assert not opened.directory.exists()


def test_the_door_lets_the_allowlisted_host_through_and_refuses_another(door, hosts):
    allowed, other = hosts["127.0.0.2"], hosts["127.0.0.3"]
    answer = through(
        door.proxy_socket,
        f"GET http://127.0.0.2:{allowed}/a?b=1 HTTP/1.1\r\nHost: 127.0.0.2\r\n"
        "Proxy-Connection: keep-alive\r\n\r\n".encode(),
    )
    assert answer.startswith(b"HTTP/1.0 200") and answer.endswith(b"hello from 127.0.0.2 /a?b=1")
    refused = through(door.proxy_socket, f"GET http://127.0.0.3:{other}/ HTTP/1.1\r\n\r\n".encode())
    assert refused.startswith(b"HTTP/1.1 403") and b"not in the agent's allowlist" in refused
    tunnel = through(
        door.proxy_socket,
        f"CONNECT 127.0.0.2:{allowed} HTTP/1.1\r\n\r\n"
        f"GET /tunnelled HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode(),
    )
    assert tunnel.startswith(b"HTTP/1.1 200 Connection Established")
    assert tunnel.endswith(b"hello from 127.0.0.2 /tunnelled")
    reported = [(c.host, c.port, c.allowed, c.method) for c in door.reported()]
    assert reported == [
        ("127.0.0.2", allowed, True, "GET"),
        ("127.0.0.3", other, False, "GET"),
        ("127.0.0.2", allowed, True, ""),
    ]


def test_the_gateway_socket_serves_the_gateway_and_nothing_else(door):
    answer = through(door.gateway_socket, b"POST /gateway/anthropic/v1/messages HTTP/1.1\r\n\r\n")
    assert answer.endswith(b"hello from 127.0.0.2 /gateway/anthropic/v1/messages")
    for path in ("/admin/", "/gateway/../admin/"):
        refused = through(door.gateway_socket, f"GET {path} HTTP/1.1\r\n\r\n".encode())
        assert refused.startswith(b"HTTP/1.1 403"), refused
    assert door.reported() == []  # the gateway is not egress


# --- a real job, each backend ----------------------------------------------------------------

PROBE = """python3 - <<'EOF'
import hashlib, os, urllib.request
with open(os.environ["SSL_CERT_FILE"], "rb") as bundle:
    print("CA", hashlib.sha256(bundle.read()).hexdigest())
for url in ("http://127.0.0.2:{allowed}/inside", "http://127.0.0.3:{other}/inside"):
    try:
        print("GOT", urllib.request.urlopen(url, timeout=20).read().decode())
    except Exception as exc:
        print("FAILED", url, exc)
EOF
"""


@pytest.mark.slow
@pytest.mark.parametrize("backend", [pytest.param("docker", marks=pytest.mark.docker), "bwrap"])
def test_a_job_reaches_its_allowlisted_host_only_and_both_tries_are_events(
    api, alice, repo, workers, hosts, backend, tmp_path
):
    if backend == "docker":
        found = subprocess.run(
            ["docker", "image", "inspect", settings.AGENTHUB_SANDBOX_IMAGE],
            capture_output=True,
            check=False,
        )
        assert found.returncode == 0, "no sandbox image: make sandbox-image"
    allowed, other = hosts["127.0.0.2"], hosts["127.0.0.3"]
    agent = shell_agent(
        repo.team,
        name=f"egress-{backend}",
        backend=backend,
        egress=Egress.ALLOWLIST,
        egress_allowlist=f"127.0.0.2:{allowed}",
    )
    response = api(alice).post(
        "/api/v1/jobs",
        {"repo": "demo", "agent": agent.name, "prompt": PROBE.format(allowed=allowed, other=other)},
    )
    assert response.status_code == 202, response.content
    # The sandbox trusts the certificates it is given: the host's, or a corporate proxy's.
    bundle = tmp_path / "corporate.pem"
    bundle.write_bytes(Path(settings.AGENTHUB_CA_BUNDLE).read_bytes() + b"# our proxy's CA\n")
    bundle.chmod(0o644)
    workers.burst(120, AGENTHUB_CA_BUNDLE=str(bundle))
    job = Job.objects.get(public_id=response.json()["id"])
    attempt = job.attempts.get()
    log = "\n".join(attempt.events.filter(kind="log").values_list("text", flat=True))
    assert f"CA {hashlib.sha256(bundle.read_bytes()).hexdigest()}" in log, log
    assert "GOT hello from 127.0.0.2 /inside" in log, (attempt.status, attempt.reason, log)
    assert f"FAILED http://127.0.0.3:{other}/inside" in log, log
    egress = [e.data for e in attempt.events.filter(kind="egress").order_by("seq")]
    assert egress == [
        {"host": "127.0.0.2", "port": allowed, "allowed": True, "method": "GET"},
        {
            "host": "127.0.0.3",
            "port": other,
            "allowed": False,
            "method": "GET",
            "reason": f"GET to 127.0.0.3:{other} is not in the agent's allowlist",
        },
    ]
    assert attempt.card["egress"] == "allowlist"
    assert attempt.card["egress_allowlist"] == [f"127.0.0.2:{allowed}"]


def test_a_ca_bundle_that_is_not_a_file_is_named_at_start(tmp_path):
    started = subprocess.run(
        [sys.executable, "-c", "import django; django.setup()"],
        env={
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "agenthub.settings",
            "AGENTHUB_CA_BUNDLE": str(tmp_path / "missing.pem"),
        },
        capture_output=True,
        text=True,
        check=False,
    )
    assert started.returncode != 0
    assert f"AGENTHUB_CA_BUNDLE={tmp_path / 'missing.pem'} is not a file" in started.stderr
