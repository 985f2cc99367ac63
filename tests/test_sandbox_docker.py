"""The Docker backend against a real Docker Engine: real containers, real cgroups, real sockets.

No skip when the engine is missing: CI must fail loudly rather than pass without testing.
Each security test shows the attempt failing inside the container for the right reason and,
where that is meaningful, a positive control succeeding: proof that the test could fail.
"""

from __future__ import annotations

import io
import itertools
import os
import queue
import socketserver
import subprocess
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from docker.client import DockerClient
from docker.errors import ImageNotFound

from jobs.sandbox import (
    Limits,
    OutputLine,
    RunningSandbox,
    SandboxError,
    SandboxSpec,
    docker_available,
    get_backend,
    image_id,
    reap,
)
from jobs.sandbox.base import LineSplitter, _pump

IMAGES = ("agenthub-sandbox:latest", "agenthub-debian:bookworm")
LIMITS = Limits(timeout_seconds=60, cpus=1, memory_mb=1024, max_processes=64)
TEST_LABEL = "agenthub.test"
# One host uid per test, away from the bwrap tests' and from other test processes.
_UIDS = itertools.count(400_000 + os.getpid() % 10_000 * 100)


@dataclass
class Result:
    exit_code: int
    lines: list[OutputLine]
    oom_killed: bool

    @property
    def stdout(self) -> list[str]:
        return [line.text for line in self.lines if line.stream == "stdout"]

    @property
    def stderr(self) -> list[str]:
        return [line.text for line in self.lines if line.stream == "stderr"]


Start = Callable[..., RunningSandbox]
Run = Callable[..., Result]


@pytest.fixture(scope="module")
def engine() -> DockerClient:
    assert docker_available(), (
        "no Docker Engine answers (DOCKER_HOST or /var/run/docker.sock): the docker backend "
        "tests need a real one; start dockerd"
    )
    return DockerClient.from_env()


@pytest.fixture(scope="module")
def image(engine: DockerClient) -> str:
    """The sandbox image if it has been built, else the bare Debian base; never pulled."""
    for name in IMAGES:
        try:
            engine.images.get(name)
        except ImageNotFound:
            continue
        return name
    pytest.fail(f"none of the images {IMAGES} exists: build them with `make sandbox-image`")


@pytest.fixture
def uid() -> Iterator[int]:
    uid = next(_UIDS)
    yield uid
    assert _processes_of(uid) == [], "a sandboxed process outlived its test"


@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    path = tmp_path / "workspace"
    path.mkdir()
    return path


@pytest.fixture
def test_id(engine: DockerClient) -> Iterator[str]:
    """Labels this test's containers, so it can find them and prove none is left behind."""
    test_id = uuid.uuid4().hex
    yield test_id
    assert _containers(engine, test_id) == [], "a sandbox container outlived its test"


@pytest.fixture
def start(workspace: Path, uid: int, image: str, test_id: str) -> Iterator[Start]:
    started: list[RunningSandbox] = []

    def start(command: str, **overrides: Any) -> RunningSandbox:
        spec = SandboxSpec(
            workspace=workspace,
            command=command,
            env={},
            limits=LIMITS,
            uid=uid,
            image=image,
            labels={TEST_LABEL: test_id},
        )
        process = get_backend("docker").start(replace(spec, **overrides))
        started.append(process)
        return process

    yield start
    for process in started:
        process.kill()


@pytest.fixture
def run(start: Start) -> Run:
    def run(command: str, **overrides: Any) -> Result:
        process = start(command, **overrides)
        lines: list[OutputLine] = []
        deadline = time.monotonic() + 30
        while not process.finished:
            assert time.monotonic() < deadline, f"sandbox still running: {command}"
            lines += process.read(0.5)
        return Result(process.wait(), lines, process.oom_killed)

    return run


@pytest.fixture
def listener() -> Iterator[int]:
    """A TCP service on every host address, docker0's included; yields its port."""

    class Hello(socketserver.BaseRequestHandler):
        def handle(self) -> None:
            self.request.sendall(b"hello\n")

    with socketserver.ThreadingTCPServer(("0.0.0.0", 0), Hello) as server:  # noqa: S104
        threading.Thread(target=server.serve_forever, daemon=True).start()
        yield server.server_address[1]
        server.shutdown()


def _containers(engine: DockerClient, test_id: str, *labels: str) -> list[str]:
    """Names of this test's containers, running or not, with all of `labels` ("key=value")."""
    wanted = [f"{TEST_LABEL}={test_id}", *labels]
    found = engine.api.containers(all=True, filters={"label": wanted})
    return [container["Names"][0].lstrip("/") for container in found]


def _inspect(engine: DockerClient, test_id: str) -> dict[str, Any]:
    (name,) = _containers(engine, test_id)
    attrs: dict[str, Any] = engine.api.inspect_container(name)
    return attrs


def _processes_of(uid: int) -> list[str]:
    """Live processes whose real uid is `uid`, read from the host's /proc."""
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            status = Path(f"/proc/{pid}/status").read_text()
        except (FileNotFoundError, ProcessLookupError):
            continue
        fields = dict(line.split(":\t", 1) for line in status.splitlines() if ":\t" in line)
        if fields["Uid"].split()[0] == str(uid) and not fields["State"].startswith("Z"):
            found.append(fields["Name"])
    return found


def _ipv4_addresses(interface: str = "") -> list[str]:
    """The host's IPv4 addresses (of one interface, or all)."""
    command = ["ip", "-4", "-o", "addr", "show", *([interface] if interface else [])]
    out = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    return [line.split()[3].split("/")[0] for line in out.splitlines()]


def _read_until(process: RunningSandbox, text: str, timeout: float = 10) -> list[OutputLine]:
    lines: list[OutputLine] = []
    deadline = time.monotonic() + timeout
    while not any(text in line.text for line in lines):
        assert time.monotonic() < deadline, f"never saw {text!r}: {lines}"
        lines += process.read(0.2)
    return lines


def _eventually(check: Callable[[], bool], timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "condition never became true"
        time.sleep(0.05)


def _connect(host: str, port: int) -> str:
    return (
        f"timeout 5 bash -c 'exec 3<>/dev/tcp/{host}/{port} && head -n 1 <&3' "
        f"&& echo CONNECTED {host}"
    )


def test_the_engine_is_chosen_automatically_and_images_are_named_by_their_id(
    engine: DockerClient, image: str
) -> None:
    assert get_backend("docker").name == "docker"
    assert get_backend("auto").name == "docker"

    assert image_id(image) == engine.images.get(image).id
    assert image_id(image).startswith("sha256:")
    with pytest.raises(SandboxError, match="make sandbox-image"):
        image_id("agenthub-no-such-image:never")


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


@pytest.mark.parametrize("size", [1, 7, 4096, 65536, 1 << 20])
def test_lines_cut_across_chunks_arrive_as_the_pipe_reader_delivers_them(size: int) -> None:
    data = b"one\r\n\ntwo caf\xc3\xa9\n" + b"x" * 150_000 + b"\n" + b"y" * 65_536 + b"\nlast"
    pipe_lines: queue.Queue[OutputLine | None] = queue.Queue()
    _pump(io.BytesIO(data), "stdout", pipe_lines)
    chunk_lines: queue.Queue[OutputLine | None] = queue.Queue()
    splitter = LineSplitter("stdout", chunk_lines)

    for start in range(0, len(data), size):
        splitter.feed(data[start : start + size])
    splitter.close()

    def texts(lines: queue.Queue[OutputLine | None]) -> list[str | None]:
        return [item.text if item else None for item in lines.queue]

    assert texts(chunk_lines) == texts(pipe_lines)
    assert texts(chunk_lines)[:3] == ["one", "", "two café"]


def test_agent_gets_the_given_environment_in_the_workspace(
    run: Run, engine: DockerClient, image: str
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
    image_env = {line.split("=", 1)[0] for line in engine.images.get(image).attrs["Config"]["Env"]}
    docker_and_bash = {"HOSTNAME", "PWD", "SHLVL", "_"}
    assert env.keys() - expected.keys() <= image_env | docker_and_bash


def test_host_environment_does_not_leak_into_the_container(
    run: Run, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AGENTHUB_CANARY_SECRET", "canary-1234")
    show = 'echo "canary=${AGENTHUB_CANARY_SECRET:-absent}"'

    assert run(show).stdout == ["canary=absent"]
    given = {"AGENTHUB_CANARY_SECRET": "canary-1234"}
    assert run(show, env=given).stdout == ["canary=canary-1234"]


def test_files_written_in_the_workspace_appear_on_the_host_owned_by_the_sandbox_uid(
    run: Run, workspace: Path, uid: int
) -> None:
    (workspace / "existing.txt").write_text("from the host\n")

    result = run("echo edited >> existing.txt && mkdir sub && echo nested > sub/file.txt; id -u")

    assert result.stdout == [str(uid)]
    assert (workspace / "existing.txt").read_text() == "from the host\nedited\n"
    assert (workspace / "sub" / "file.txt").read_text() == "nested\n"
    for path in (
        workspace,
        workspace / "existing.txt",
        workspace / "sub",
        workspace / "sub/file.txt",
    ):
        assert (path.stat().st_uid, path.stat().st_gid) == (uid, uid)


def test_hard_linked_host_files_stay_out_of_the_agents_hands(
    run: Run, workspace: Path, tmp_path: Path
) -> None:
    store = tmp_path / "store.txt"
    store.write_text("object\n")
    (workspace / "linked.txt").hardlink_to(store)

    result = run("echo pwned >> linked.txt")

    assert store.read_text() == "object\n" and store.stat().st_uid == 0
    assert "Permission denied" in result.stderr[0]


def test_the_root_filesystem_is_read_only(run: Run) -> None:
    name = f"agenthub-probe-{uuid.uuid4().hex}"
    # /var/tmp is world-writable in the image: only a read-only root stops the write there.
    targets = [f"{directory}/{name}" for directory in ("/etc", "/usr", "/usr/bin", "/var/tmp")]

    result = run("; ".join(f"touch {target} && echo WROTE {target}" for target in targets))

    assert result.stdout == []
    assert len(result.stderr) == len(targets)
    assert all("Read-only file system" in line for line in result.stderr)


def test_tmp_is_a_size_limited_home(run: Run) -> None:
    result = run("head -c 200M /dev/zero > $HOME/fill || echo FULL; df -m /tmp | tail -n 1")

    assert result.stdout[0] == "FULL"
    assert "No space left on device" in result.stderr[0]
    assert result.stdout[1].split()[1] == "64"  # size in MB


def test_agent_cannot_reach_the_network_or_host_services(
    run: Run, listener: int, engine: DockerClient
) -> None:
    bridge = engine.networks.get("bridge").attrs["Options"]["com.docker.network.bridge.name"]
    (gateway,) = _ipv4_addresses(bridge)
    probes = [_connect("127.0.0.1", 6379)]  # the host's Redis
    probes += [_connect(address, listener) for address in _ipv4_addresses()]

    result = run("; ".join(probes))

    assert gateway in _ipv4_addresses()
    assert result.stdout == []
    reasons = ("Connection refused", "Network is unreachable")  # at once: not a slow timeout
    assert result.stderr and all(line.endswith(reasons) for line in result.stderr)
    allowed = run(_connect(gateway, listener), network=True)
    assert allowed.stdout == ["hello", f"CONNECTED {gateway}"]


def test_agent_cannot_read_host_secrets_or_reach_the_docker_socket(run: Run) -> None:
    assert Path("/var/run/docker.sock").is_socket()  # the host has one to leak
    probe = (
        "test -e /etc/shadow && echo SHADOW-EXISTS; cat /etc/shadow; "
        "test -S /var/run/docker.sock || echo NO-DOCKER-SOCKET; ls /root"
    )

    result = run(probe)

    assert result.stdout == ["SHADOW-EXISTS", "NO-DOCKER-SOCKET"]
    assert "Permission denied" in result.stderr[0]
    assert "Permission denied" in result.stderr[1]


def test_agent_runs_without_capabilities_or_new_privileges(run: Run) -> None:
    result = run("grep -E '^(CapPrm|CapEff|CapBnd|CapAmb|NoNewPrivs)' /proc/self/status")

    assert result.stdout == [
        "CapPrm:\t0000000000000000",
        "CapEff:\t0000000000000000",
        "CapBnd:\t0000000000000000",
        "CapAmb:\t0000000000000000",
        "NoNewPrivs:\t1",
    ]


def test_the_container_is_created_hardened_and_labelled(
    start: Start, engine: DockerClient, test_id: str, uid: int, workspace: Path
) -> None:
    limits = Limits(timeout_seconds=60, cpus=1.5, memory_mb=300, max_processes=50)
    labels = {TEST_LABEL: test_id, "agenthub.job": "J1", "agenthub.attempt": "7"}
    process = start("echo ready; sleep 600", limits=limits, labels=labels)
    _read_until(process, "ready")

    attrs = _inspect(engine, test_id)

    # The image's own labels are inherited too.
    assert attrs["Config"]["Labels"].items() >= {**labels, "agenthub.sandbox": "1"}.items()
    assert attrs["Config"]["User"] == f"{uid}:{uid}"
    host = attrs["HostConfig"]
    assert host["NetworkMode"] == "none"
    assert host["CapDrop"] == ["ALL"] and not host["CapAdd"]
    assert host["SecurityOpt"] == ["no-new-privileges"]
    assert host["ReadonlyRootfs"] and not host["Privileged"] and host["Init"]
    assert host["Memory"] == host["MemorySwap"] == 300 * 1024**2
    assert host["NanoCpus"] == 1_500_000_000 and host["PidsLimit"] == 50
    assert [(m["Source"], m["Destination"], m["RW"]) for m in attrs["Mounts"]] == [
        (str(workspace), "/workspace", True)
    ]
    assert process.pid > 0


def test_read_only_files_are_mounted_where_asked(run: Run, tmp_path: Path) -> None:
    prompt = tmp_path / "prompt.txt"
    prompt.write_text("fix the bug\n")
    prompt.chmod(0o666)  # so that only the read-only mount stops the write
    path = "/run/agenthub/prompt.txt"

    result = run(f"cat {path}; echo pwned >> {path}", ro_files={path: prompt})

    assert result.stdout == ["fix the bug"]
    assert "Read-only file system" in result.stderr[0]
    assert prompt.read_text() == "fix the bug\n"


def test_a_fork_bomb_stops_at_the_process_limit(start: Start, uid: int) -> None:
    process = start(
        "bomb() { bomb | bomb & }; bomb; sleep 600", limits=replace(LIMITS, max_processes=20)
    )

    _read_until(process, "Resource temporarily unavailable")

    assert len(_processes_of(uid)) <= 20
    process.kill()
    assert _processes_of(uid) == []


def test_a_memory_bomb_is_killed_by_the_kernel_and_reported_as_out_of_memory(run: Run) -> None:
    allocate = "python3 -c \"b = bytearray(512 * 1024**2); print('allocated')\""

    result = run(allocate, limits=replace(LIMITS, memory_mb=128))

    assert (result.exit_code, result.oom_killed) == (137, True)
    # Killed by the cgroup's OOM killer, not a MemoryError from a refused allocation.
    assert result.stdout == [] and result.stderr == []
    allowed = run(allocate, limits=replace(LIMITS, memory_mb=1024))
    assert (allowed.exit_code, allowed.oom_killed, allowed.stdout) == (0, False, ["allocated"])


def test_kill_ends_a_sleeping_agent_quickly_and_removes_its_container(
    start: Start, engine: DockerClient, test_id: str, uid: int
) -> None:
    process = start("sleep 600 & sleep 600")
    _eventually(lambda: _processes_of(uid).count("sleep") == 2)
    began = time.monotonic()

    process.kill()

    assert time.monotonic() - began < 5
    assert _containers(engine, test_id) == []
    assert _processes_of(uid) == []
    assert process.wait() == 137
    process.read(1)
    assert process.finished
    process.kill()


def test_a_finished_agent_leaves_no_container_behind(
    run: Run, engine: DockerClient, test_id: str
) -> None:
    assert run("true").exit_code == 0

    assert _containers(engine, test_id) == []


def test_reap_removes_orphaned_containers_and_keeps_the_running_ones(
    start: Start, engine: DockerClient, test_id: str
) -> None:
    orphan = start("echo ready; sleep 600", labels={TEST_LABEL: test_id, "agenthub.attempt": "1"})
    alive = start("echo ready; sleep 600", labels={TEST_LABEL: test_id, "agenthub.attempt": "2"})
    _read_until(orphan, "ready")
    _read_until(alive, "ready")

    def keep(labels: dict[str, str]) -> bool:
        # Other tests' and other users' containers are never this test's business.
        return labels.get(TEST_LABEL) != test_id or labels.get("agenthub.attempt") == "2"

    orphan_names = _containers(engine, test_id, "agenthub.attempt=1")
    alive_names = _containers(engine, test_id, "agenthub.attempt=2")

    removed = reap(keep)

    assert removed == orphan_names
    assert _containers(engine, test_id) == alive_names
    assert orphan.wait(10) == 137
    assert alive.poll() is None


def test_a_missing_image_is_refused_without_pulling(
    start: Start, engine: DockerClient, test_id: str
) -> None:
    with pytest.raises(SandboxError, match="never pulls"):
        start("true", image="agenthub-no-such-image:never")

    assert _containers(engine, test_id) == []
    with pytest.raises(ImageNotFound):
        engine.images.get("agenthub-no-such-image:never")
