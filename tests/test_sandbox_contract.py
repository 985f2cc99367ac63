"""What every real sandbox backend promises, tested once and run against each: bubblewrap and a
real Docker Engine, with real processes, real sockets and real containers.

Each security test shows the attempt failing inside the sandbox and the host untouched and,
where that is safe for the host, the same command succeeding through the local backend (no
isolation): proof that the test could fail. Where the backends
differ in how they keep a promise (the image's files, the tmpfs size, uid 1000 inside bwrap),
the test names the difference. No skip when the Docker Engine is missing: CI must fail loudly
rather than pass without testing.
"""

from __future__ import annotations

import os
import socketserver
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import pytest
from docker.client import DockerClient

from tests import sandbox_support as support
from tests.sandbox_support import (
    LIMITS,
    Run,
    Start,
    containers,
    eventually,
    names_of_processes,
    processes_of,
    read_until,
)

engine, image, test_id = support.engine, support.image, support.test_id
workspace, start, run = support.workspace, support.start, support.run
# Away from test_sandbox.py's (300_000) and test_sandbox_docker.py's (400_000).
uid = support.uid_fixture(500_000)

AS_ROOT = pytest.mark.skipif(
    os.geteuid() != 0, reason="the sandbox switches to per-attempt uids, which needs root"
)
INSIDE_UID = 1000  # bwrap's agent inside its user namespace; docker runs as the host uid


@pytest.fixture(params=[pytest.param("bwrap", marks=AS_ROOT), "docker"])
def backend(request: pytest.FixtureRequest) -> str:
    name: str = request.param
    return name


@pytest.fixture
def listener() -> Iterator[int]:
    """A TCP service on every host address, docker0's included, like Redis or Postgres; yields
    its port."""

    class Hello(socketserver.BaseRequestHandler):
        def handle(self) -> None:
            self.request.sendall(b"hello\n")

    with socketserver.ThreadingTCPServer(("0.0.0.0", 0), Hello) as server:  # noqa: S104
        threading.Thread(target=server.serve_forever, daemon=True).start()
        yield server.server_address[1]
        server.shutdown()


def _ipv4_addresses(interface: str = "") -> list[str]:
    """The host's IPv4 addresses (of one interface, or all)."""
    command = ["ip", "-4", "-o", "addr", "show", *([interface] if interface else [])]
    out = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    return [line.split()[3].split("/")[0] for line in out.splitlines()]


def _connect(host: str, port: int) -> str:
    return (
        f"timeout 5 bash -c 'exec 3<>/dev/tcp/{host}/{port} && head -n 1 <&3' "
        f"&& echo CONNECTED {host}"
    )


def test_output_lines_arrive_per_stream_in_order_with_timestamps_and_exit_code(run: Run) -> None:
    before = datetime.now(UTC)

    result = run("echo out1; echo err1 >&2; echo out2; echo err2 >&2; printf tail; exit 3")

    assert result.exit_code == 3
    assert result.stdout == ["out1", "out2", "tail"]
    assert result.stderr == ["err1", "err2"]
    for stream in ("stdout", "stderr"):
        stamps = [line.ts for line in result.lines if line.stream == stream]
        assert stamps == sorted(stamps)
        assert all(before <= ts <= datetime.now(UTC) and ts.tzinfo is UTC for ts in stamps)


def test_long_lines_are_split_and_undecodable_bytes_replaced(run: Run) -> None:
    result = run(
        "python3 -c \"import sys; sys.stdout.write('x' * 150000 + '\\n'); "
        "sys.stdout.flush(); sys.stdout.buffer.write(b'caf\\xe9\\n')\""
    )

    assert [len(text) for text in result.stdout] == [65536, 65536, 18928, 4]
    assert result.stdout[-1] == "caf\ufffd"


def test_agent_gets_exactly_the_given_environment_in_the_workspace(
    run: Run, backend: str, request: pytest.FixtureRequest
) -> None:
    result = run("pwd; env", env={"AGENTHUB_JOB_ID": "42", "AGENTHUB_ATTEMPT": "1"})

    assert result.stdout[0] == "/workspace"
    env = dict(line.split("=", 1) for line in result.stdout[1:])
    expected = {
        "AGENTHUB_JOB_ID": "42",
        "AGENTHUB_ATTEMPT": "1",
        "PATH": "/usr/local/bin:/usr/bin:/bin",
        "HOME": "/tmp",
        "LANG": "C.UTF-8",
    }
    assert {key: env.get(key) for key in expected} == expected
    bash_own = {"PWD", "SHLVL", "_"}
    if backend == "docker":  # the image's ENV lines, and the container's HOSTNAME
        engine, image = (request.getfixturevalue(name) for name in ("engine", "image"))
        image_env = {
            line.split("=", 1)[0] for line in engine.images.get(image).attrs["Config"]["Env"]
        }
        assert env.keys() - expected.keys() <= bash_own | image_env | {"HOSTNAME"}
    else:
        assert env.keys() - expected.keys() <= bash_own


def test_host_environment_does_not_leak_into_the_sandbox(
    run: Run, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AGENTHUB_CANARY_SECRET", "canary-1234")
    show = 'echo "canary=${AGENTHUB_CANARY_SECRET:-absent}"'

    assert run(show).stdout == ["canary=absent"]
    assert run(show, "local").stdout == ["canary=absent"]
    given = {"AGENTHUB_CANARY_SECRET": "canary-1234"}
    assert run(show, env=given).stdout == ["canary=canary-1234"]


def test_environment_secrets_do_not_show_in_the_host_process_list(start: Start, uid: int) -> None:
    secret = f"sk-{uuid.uuid4()}"
    # Not a lone last command, which bash would exec in its own place.
    sandbox = start("echo ready; sleep 600; echo done", env={"API_KEY": secret})
    read_until(sandbox, "ready")
    eventually(lambda: "sleep" in names_of_processes(uid))

    cmdlines = [Path(f"/proc/{p['pid']}/cmdline").read_bytes() for p in processes_of(uid)]

    assert len(cmdlines) >= 3  # bwrap, its init, bash, sleep; docker's init, bash, sleep
    assert not any(secret.encode() in cmdline for cmdline in cmdlines)


def test_files_written_in_the_workspace_appear_on_the_host_owned_by_the_sandbox_uid(
    run: Run, backend: str, workspace: Path, uid: int
) -> None:
    (workspace / "existing.txt").write_text("from the host\n")

    result = run(
        "echo hello > result.txt && echo edited >> existing.txt && mkdir sub "
        "&& echo nested > sub/file.txt && id -u"
    )

    assert result.exit_code == 0
    assert result.stdout == [str(INSIDE_UID if backend == "bwrap" else uid)]
    assert (workspace / "result.txt").read_text() == "hello\n"
    assert (workspace / "existing.txt").read_text() == "from the host\nedited\n"
    assert (workspace / "sub" / "file.txt").read_text() == "nested\n"
    for path in (workspace, *workspace.rglob("*")):
        assert (path.stat().st_uid, path.stat().st_gid) == (uid, uid)


def test_agent_cannot_write_outside_the_workspace(run: Run) -> None:
    name = f"agenthub-probe-{uuid.uuid4().hex}"
    targets = [f"{directory}/{name}" for directory in ("", "/etc", "/usr", "/root", "/dev")]
    targets += [f"/workspace/../{name}", f"/usr/bin/{name}", "/etc/passwd", "/tmp/../etc/hosts"]
    probe = "; ".join(f"echo pwned >> {target} && echo WROTE {target}" for target in targets)

    result = run(probe)

    assert [line for line in result.stdout if "WROTE" in line] == []
    assert len(result.stderr) == len(targets)
    for target in targets[:5]:
        assert not Path(target).exists()
    assert "pwned" not in Path("/etc/passwd").read_text()


def test_agent_cannot_write_to_a_host_directory_next_to_the_workspace(
    run: Run, tmp_path: Path
) -> None:
    def attack(directory: Path) -> str:
        return (
            f"echo pwned > {directory}/keep.txt; echo pwned > ../{directory.name}/keep.txt; "
            f"echo pwned > {directory}/new.txt; ls {directory}"
        )

    outside, twin = tmp_path / "outside", tmp_path / "twin"
    for directory in (outside, twin):
        directory.mkdir()
        (directory / "keep.txt").write_text("original")

    result = run(attack(outside))

    assert result.stdout == []
    assert sorted(os.listdir(outside)) == ["keep.txt"]
    assert (outside / "keep.txt").read_text() == "original"
    run(attack(twin), "local")
    assert sorted(os.listdir(twin)) == ["keep.txt", "new.txt"]


def test_agent_cannot_read_host_secrets_or_reach_the_docker_socket(run: Run, backend: str) -> None:
    assert Path("/var/run/docker.sock").is_socket()  # the host has one to leak
    probe = (
        "test -e /etc/shadow && echo SHADOW-EXISTS; cat /etc/shadow; ls -a /root; ls /root/.ssh; "
        "test -S /var/run/docker.sock || echo NO-DOCKER-SOCKET"
    )

    result = run(probe)

    assert len(result.stderr) == 3
    if backend == "docker":  # the image's own /etc/shadow and /root, closed to the agent
        assert result.stdout == ["SHADOW-EXISTS", "NO-DOCKER-SOCKET"]
        assert all("Permission denied" in line for line in result.stderr)
    else:  # nothing of the host's /etc, /root, /home, /var or /run is there at all
        assert result.stdout == ["NO-DOCKER-SOCKET"]
        assert all("No such file or directory" in line for line in result.stderr)
        hidden = run("ls /home /var /run")
        assert hidden.stdout == [] and len(hidden.stderr) == 3
    local = run("head -c 5 /etc/shadow; echo; ls -a /root", "local")
    assert local.stdout[0] == "root:"
    assert ".bashrc" in local.stdout


def test_agent_cannot_reach_the_network_or_host_services(
    run: Run, backend: str, listener: int, request: pytest.FixtureRequest
) -> None:
    probes = [_connect("127.0.0.1", 6379)]  # the host's Redis
    probes += [_connect(address, listener) for address in _ipv4_addresses()]

    result = run("; ".join(probes))

    assert "127.0.0.1" in _ipv4_addresses()
    assert result.stdout == []
    reasons = ("Connection refused", "Network is unreachable")  # at once: not a slow timeout
    assert result.stderr and all(line.endswith(reasons) for line in result.stderr)
    assert run(_connect("127.0.0.1", listener), "local").stdout == ["hello", "CONNECTED 127.0.0.1"]


def test_hard_linked_host_files_stay_out_of_the_agents_hands(
    run: Run, workspace: Path, tmp_path: Path
) -> None:
    store = tmp_path / "store.txt"
    store.write_text("object\n")
    (workspace / "linked.txt").hardlink_to(store)
    (workspace / "own.txt").write_text("mine\n")

    result = run("echo pwned >> linked.txt; echo edited >> own.txt")

    assert store.read_text() == "object\n" and store.stat().st_uid == 0
    assert (workspace / "own.txt").read_text() == "mine\nedited\n"
    assert len(result.stderr) == 1
    assert "Permission denied" in result.stderr[0]


def test_read_only_files_are_mounted_where_asked(run: Run, tmp_path: Path) -> None:
    private = tmp_path / "private"
    private.mkdir(mode=0o711)
    prompt = private / "prompt.txt"
    prompt.write_text("fix the bug\n")
    prompt.chmod(0o666)  # so that only the read-only mount stops the write
    path = "/run/agenthub/prompt.txt"

    result = run(f"cat {path}; echo pwned >> {path}", ro_files={path: prompt})

    assert result.stdout == ["fix the bug"]
    assert "Read-only file system" in result.stderr[0]
    assert prompt.read_text() == "fix the bug\n"


def test_tmp_is_a_private_size_limited_home(run: Run, backend: str) -> None:
    name = f"agenthub-probe-{uuid.uuid4().hex}"
    limits = replace(LIMITS, memory_mb=128)

    result = run(
        f"head -c 200M /dev/zero > $HOME/{name} || echo FULL; df -m /tmp | tail -n 1",
        limits=limits,
    )

    assert result.stdout[0] == "FULL" and len(result.stdout) == 2
    assert "No space left on device" in result.stderr[0]
    size_mb = limits.memory_mb if backend == "bwrap" else 64  # docker's is fixed
    assert result.stdout[1].split()[1] == str(size_mb)
    assert not Path("/tmp", name).exists()


def test_kill_ends_an_agent_and_its_background_children_quickly_and_leaves_nothing(
    start: Start, backend: str, uid: int, request: pytest.FixtureRequest
) -> None:
    sandbox = start("sleep 600 & echo ready; sleep 600")
    read_until(sandbox, "ready")
    eventually(lambda: names_of_processes(uid).count("sleep") == 2)
    began = time.monotonic()

    sandbox.kill()

    assert time.monotonic() - began < 5
    assert processes_of(uid) == []
    if backend == "docker":  # the container is gone too, and the exit code says killed
        engine: DockerClient = request.getfixturevalue("engine")
        assert containers(engine, request.getfixturevalue("test_id")) == []
        assert sandbox.wait() == 137
    else:
        assert sandbox.wait() != 0
    sandbox.read(1)
    assert sandbox.finished
    sandbox.kill()


def test_kill_also_ends_processes_that_escaped_into_their_own_session(
    start: Start, uid: int
) -> None:
    def sessions_of_sleepers() -> int:
        return len({p["sid"] for p in processes_of(uid) if p["name"] == "sleep"})

    sandbox = start("(setsid sleep 600 &); sleep 600")
    eventually(lambda: sessions_of_sleepers() == 2)

    sandbox.kill()

    assert processes_of(uid) == []


@pytest.mark.parametrize(
    "bomb",
    ["for i in $(seq 100); do sleep 5 & done; wait", "bomb() { bomb | bomb & }; bomb; sleep 600"],
    ids=["sleepers", "recursive"],
)
def test_a_fork_bomb_stops_at_the_process_limit(start: Start, uid: int, bomb: str) -> None:
    sandbox = start(bomb, limits=replace(LIMITS, max_processes=20))

    read_until(sandbox, "Resource temporarily unavailable")

    assert len(processes_of(uid)) <= 20
    sandbox.kill()
    assert processes_of(uid) == []


def test_memory_limit_stops_a_large_allocation(run: Run, backend: str) -> None:
    allocate = "python3 -c \"b = bytearray(2 * 1024**3); print('allocated')\""

    result = run(allocate, limits=replace(LIMITS, memory_mb=256))

    assert result.exit_code != 0 and result.stdout == []
    if backend == "bwrap":  # an address-space limit refuses it (docker's OOM killer: its file)
        assert result.stderr[-1] == "MemoryError"
    allowed = run(allocate, limits=replace(LIMITS, memory_mb=4096))
    assert (allowed.exit_code, allowed.stdout) == (0, ["allocated"])
