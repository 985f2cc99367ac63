"""The sandbox core against the real thing: bubblewrap, real processes, real sockets.

Each security test shows the attempt failing inside the bwrap sandbox and the host untouched and,
where that is safe for the host, the same command succeeding through the local backend: proof
that the test could fail.
"""

from __future__ import annotations

import itertools
import os
import socketserver
import stat
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from jobs.sandbox import (
    Limits,
    OutputLine,
    SandboxError,
    SandboxProcess,
    SandboxSpec,
    get_backend,
)

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0, reason="the sandbox switches to per-attempt uids, which needs root"
)

LIMITS = Limits(timeout_seconds=60, cpus=1, memory_mb=1024, max_processes=64)
# One host uid per test, away from the default and from other test processes.
_UIDS = itertools.count(300_000 + os.getpid() % 10_000 * 100)


@dataclass
class Result:
    exit_code: int
    lines: list[OutputLine]

    @property
    def stdout(self) -> list[str]:
        return [line.text for line in self.lines if line.stream == "stdout"]

    @property
    def stderr(self) -> list[str]:
        return [line.text for line in self.lines if line.stream == "stderr"]


Start = Callable[..., SandboxProcess]
Run = Callable[..., Result]


@pytest.fixture
def uid() -> Iterator[int]:
    uid = next(_UIDS)
    yield uid
    assert _processes_of(uid) == [], "a sandboxed process outlived its test"


@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    # bwrap runs as the sandbox uid and must reach the workspace; pytest makes its dirs 0700.
    for directory in (tmp_path, *tmp_path.parents):
        mode = directory.stat().st_mode
        if not mode & stat.S_IXOTH:
            directory.chmod(mode | stat.S_IXOTH)
    path = tmp_path / "workspace"
    path.mkdir()
    return path


@pytest.fixture
def start(workspace: Path, uid: int) -> Iterator[Start]:
    started: list[SandboxProcess] = []

    def start(command: str, backend: str = "bwrap", **overrides: Any) -> SandboxProcess:
        spec = SandboxSpec(workspace=workspace, command=command, env={}, limits=LIMITS, uid=uid)
        process = get_backend(backend, allow_local=True).start(replace(spec, **overrides))
        started.append(process)
        return process

    yield start
    for process in started:
        process.kill()


@pytest.fixture
def run(start: Start) -> Run:
    def run(command: str, backend: str = "bwrap", **overrides: Any) -> Result:
        process = start(command, backend, **overrides)
        lines: list[OutputLine] = []
        deadline = time.monotonic() + 30
        while not process.finished:
            assert time.monotonic() < deadline, f"sandbox still running: {command}"
            lines += process.read(0.5)
        return Result(process.wait(), lines)

    return run


@pytest.fixture
def listener() -> Iterator[int]:
    """A TCP service on the host's loopback, like Redis or Postgres; yields its port."""

    class Hello(socketserver.BaseRequestHandler):
        def handle(self) -> None:
            self.request.sendall(b"hello\n")

    with socketserver.ThreadingTCPServer(("127.0.0.1", 0), Hello) as server:
        threading.Thread(target=server.serve_forever, daemon=True).start()
        yield server.server_address[1]
        server.shutdown()


def _processes_of(uid: int) -> list[dict[str, str]]:
    """Live processes whose real uid is `uid`, read straight from /proc."""
    return [p for p in _live_processes() if p["uid"] == str(uid)]


def _group_members(pgid: int) -> list[dict[str, str]]:
    return [p for p in _live_processes() if p["pgid"] == str(pgid)]


def _live_processes() -> Iterator[dict[str, str]]:
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            status = Path(f"/proc/{pid}/status").read_text()
            stat_fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except (FileNotFoundError, ProcessLookupError):
            continue
        fields = dict(line.split(":\t", 1) for line in status.splitlines() if ":\t" in line)
        if not fields["State"].startswith("Z"):
            uid = fields["Uid"].split()[0]
            yield {
                "pid": pid,
                "name": fields["Name"],
                "uid": uid,
                "pgid": stat_fields[2],
                "sid": stat_fields[3],
            }


def _read_until(process: SandboxProcess, text: str, timeout: float = 10) -> list[OutputLine]:
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


def test_output_lines_arrive_per_stream_in_order_with_timestamps_and_exit_code(run: Run) -> None:
    before = datetime.now(UTC)

    result = run("echo out1; echo err1 >&2; echo out2; echo err2 >&2; exit 3")

    assert result.exit_code == 3
    assert result.stdout == ["out1", "out2"]
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


def test_agent_gets_exactly_the_given_environment_in_the_workspace(run: Run) -> None:
    result = run("pwd; env", env={"AGENTHUB_JOB_ID": "42", "AGENTHUB_ATTEMPT": "1"})

    assert result.stdout[0] == "/workspace"
    env = dict(line.split("=", 1) for line in result.stdout[1:])
    assert {key: env[key] for key in env.keys() - {"PWD", "SHLVL", "_"}} == {  # bash's own
        "AGENTHUB_JOB_ID": "42",
        "AGENTHUB_ATTEMPT": "1",
        "PATH": "/usr/local/bin:/usr/bin:/bin",
        "HOME": "/tmp",
        "LANG": "C.UTF-8",
    }


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
    process = start("echo ready; sleep 600", env={"API_KEY": secret})
    _read_until(process, "ready")

    cmdlines = [Path(f"/proc/{p['pid']}/cmdline").read_bytes() for p in _processes_of(uid)]

    assert len(cmdlines) >= 3  # bwrap, its init, bash, sleep
    assert not any(secret.encode() in cmdline for cmdline in cmdlines)


def test_files_written_in_the_workspace_appear_on_the_host(run: Run, workspace: Path) -> None:
    result = run("echo hello > result.txt && mkdir -p sub && echo nested > sub/file.txt")

    assert result.exit_code == 0
    assert (workspace / "result.txt").read_text() == "hello\n"
    assert (workspace / "sub" / "file.txt").read_text() == "nested\n"


def test_agent_runs_as_an_unprivileged_user_without_capabilities(run: Run) -> None:
    probe = (
        "id -u; id -un; hostname; grep -E '^(CapEff|NoNewPrivs)' /proc/self/status; "
        "unshare --user true && echo NESTED-USERNS"
    )

    result = run(probe)

    assert result.stdout == [
        "1000",
        "agent",
        "agenthub",
        "CapEff:\t0000000000000000",
        "NoNewPrivs:\t1",
    ]
    assert "NESTED-USERNS" in run("unshare --user true && echo NESTED-USERNS", "local").stdout


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


def test_agent_cannot_read_host_secrets(run: Run) -> None:
    probe = "cat /etc/shadow; ls -a /root; ls /root/.ssh; ls /home /var /run"

    result = run(probe)

    assert result.stdout == []
    assert len(result.stderr) == 6
    local = run("head -c 5 /etc/shadow; echo; ls -a /root", "local")
    assert local.stdout[0] == "root:"
    assert ".bashrc" in local.stdout


def test_agent_cannot_connect_to_host_services(run: Run, listener: int) -> None:
    def connect(port: int) -> str:
        return f"exec 3<>/dev/tcp/127.0.0.1/{port} && head -n 1 <&3 && echo CONNECTED {port}"

    probe = f"{connect(listener)}; {connect(6379)}"

    result = run(probe)

    assert result.stdout == []
    assert f"CONNECTED {listener}" in run(connect(listener), "local").stdout
    assert run(connect(listener), network=True).stdout == ["hello", f"CONNECTED {listener}"]


def test_symlinks_in_the_workspace_cannot_reach_host_files(
    run: Run, workspace: Path, tmp_path: Path
) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text("top secret\n")
    (workspace / "absolute").symlink_to(secret)
    (workspace / "relative").symlink_to("../secret.txt")
    (workspace / "hostname").symlink_to("/etc/hostname")
    links = "absolute relative hostname"

    result = run(f"cat {links}; for link in {links}; do echo pwned > $link; done")

    assert result.stdout == []
    assert secret.read_text() == "top secret\n"
    assert secret.stat().st_uid == 0 and Path("/etc/hostname").stat().st_uid == 0
    assert run("cat absolute relative", "local").stdout == ["top secret", "top secret"]


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


def test_read_only_files_are_mounted_where_asked(run: Run, tmp_path: Path) -> None:
    private = tmp_path / "private"
    private.mkdir(mode=0o711)
    prompt = private / "prompt.txt"
    prompt.write_text("fix the bug\n")
    path = "/run/agenthub/prompt.txt"

    result = run(f"cat {path}; echo pwned >> {path}", ro_files={path: prompt})

    assert result.stdout == ["fix the bug"]
    assert prompt.read_text() == "fix the bug\n"


def test_local_backend_points_read_only_file_variables_at_the_host_files(
    run: Run, tmp_path: Path
) -> None:
    prompt = tmp_path / "prompt.txt"
    prompt.write_text("fix the bug\n")
    path = "/run/agenthub/prompt.txt"

    result = run(
        'cat "$AGENTHUB_PROMPT_FILE"',
        "local",
        env={"AGENTHUB_PROMPT_FILE": path},
        ro_files={path: prompt},
    )

    assert result.stdout == ["fix the bug"]


def test_tmp_is_a_private_size_limited_home(run: Run) -> None:
    name = f"agenthub-probe-{uuid.uuid4().hex}"
    limits = replace(LIMITS, memory_mb=128)

    result = run(f"head -c 200M /dev/zero > $HOME/{name} || echo FULL", limits=limits)

    assert result.stdout == ["FULL"]
    assert "No space left on device" in result.stderr[0]
    assert not Path("/tmp", name).exists()


def test_kill_ends_a_sleeping_agent_quickly_and_leaves_no_process(start: Start, uid: int) -> None:
    process = start("echo ready; sleep 600")
    _read_until(process, "ready")
    assert "sleep" in [p["name"] for p in _processes_of(uid)]
    began = time.monotonic()

    process.kill()

    assert time.monotonic() - began < 5
    assert _processes_of(uid) == []
    assert process.wait() != 0
    process.read(1)
    assert process.finished
    process.kill()


def test_kill_also_ends_background_children(start: Start, uid: int) -> None:
    process = start("sleep 600 & echo ready; sleep 600")
    _read_until(process, "ready")
    assert [p["name"] for p in _processes_of(uid)].count("sleep") == 2

    process.kill()

    assert _processes_of(uid) == []


def test_kill_also_ends_processes_that_escaped_into_their_own_session(
    start: Start, uid: int
) -> None:
    def sessions_of_sleepers() -> int:
        return len({p["sid"] for p in _processes_of(uid) if p["name"] == "sleep"})

    process = start("(setsid sleep 600 &); sleep 600")
    _eventually(lambda: sessions_of_sleepers() == 2)

    process.kill()

    assert _processes_of(uid) == []


def test_local_backend_kill_ends_its_process_group(start: Start) -> None:
    process = start("sleep 600 & echo ready; sleep 600", "local")
    _read_until(process, "ready")
    assert [p["name"] for p in _group_members(process.pid)].count("sleep") == 2

    process.kill()

    assert _group_members(process.pid) == []
    assert process.wait() == -9


def test_a_fork_bomb_stops_at_the_process_limit(start: Start, uid: int) -> None:
    limits = replace(LIMITS, max_processes=20)
    process = start("for i in $(seq 100); do sleep 5 & done; wait", limits=limits)

    _read_until(process, "Resource temporarily unavailable")

    assert len(_processes_of(uid)) <= 20
    process.kill()
    assert _processes_of(uid) == []


def test_memory_limit_stops_a_large_allocation(run: Run) -> None:
    allocate = 'python3 -c "bytearray(2 * 1024**3)"'

    result = run(allocate, limits=replace(LIMITS, memory_mb=256))

    assert result.exit_code != 0
    assert result.stderr[-1] == "MemoryError"
    assert run(allocate, limits=replace(LIMITS, memory_mb=4096)).exit_code == 0


def test_unreachable_workspace_is_refused_with_a_hint(tmp_path: Path, uid: int) -> None:
    hidden = tmp_path / "hidden"
    (hidden / "workspace").mkdir(parents=True)
    hidden.chmod(0o700)
    spec = SandboxSpec(
        workspace=hidden / "workspace", command="true", env={}, limits=LIMITS, uid=uid
    )

    with pytest.raises(SandboxError, match=f"chmod o\\+x {hidden}"):
        get_backend("bwrap").start(spec)


def test_local_backend_is_refused_unless_allowed() -> None:
    with pytest.raises(SandboxError, match="AGENTHUB_ALLOW_LOCAL_SANDBOX=1"):
        get_backend("local")

    assert get_backend("local", allow_local=True).name == "local"


def test_unknown_backend_names_the_choices() -> None:
    with pytest.raises(SandboxError, match="'nope'.*bwrap, local"):
        get_backend("nope")
