"""What the sandbox tests share: test_sandbox.py (bwrap, local), test_sandbox_docker.py (docker)
and test_sandbox_contract.py (what every real backend promises, run against each of them).

A test module takes a fixture from here by giving it a name of its own (`run = support.run`:
pytest finds fixtures among a module's names) and says which backend `start` and `run` use with
its own `backend` fixture. The docker fixtures fail, never skip, when no Docker Engine answers.
"""

from __future__ import annotations

import itertools
import os
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pytest
from docker.client import DockerClient
from docker.errors import ImageNotFound

from jobs.sandbox import (
    Limits,
    OutputLine,
    RunningSandbox,
    SandboxSpec,
    docker_available,
    get_backend,
)

LIMITS = Limits(timeout_seconds=60, cpus=1, memory_mb=1024, max_processes=64)
IMAGES = ("agenthub-sandbox:latest", "agenthub-debian:bookworm")
TEST_LABEL = "agenthub.test"


@dataclass
class Result:
    exit_code: int
    lines: list[OutputLine]
    oom_killed: bool = False

    @property
    def stdout(self) -> list[str]:
        return [line.text for line in self.lines if line.stream == "stdout"]

    @property
    def stderr(self) -> list[str]:
        return [line.text for line in self.lines if line.stream == "stderr"]


Start = Callable[..., RunningSandbox]
Run = Callable[..., Result]


def uid_fixture(base: int) -> Any:
    """A `uid` fixture: one host uid per test, counted up from `base`. Each test file has its own
    base, 100_000 apart, so two files never hand out the same uid in one test process; the pid
    keeps concurrent test processes apart. A process of the uid that outlives its test fails it.
    """
    uids = itertools.count(base + os.getpid() % 10_000 * 100)

    @pytest.fixture
    def uid() -> Iterator[int]:
        uid = next(uids)
        yield uid
        assert processes_of(uid) == [], "a sandboxed process outlived its test"

    return uid


@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    # Under pytest's 0700 directories, as a data directory in a private home would be: every
    # backend must reach it all the same.
    path = tmp_path / "workspace"
    path.mkdir()
    return path


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
def test_id(engine: DockerClient) -> Iterator[str]:
    """Labels this test's containers, so it can find them and prove none is left behind."""
    test_id = uuid.uuid4().hex
    yield test_id
    assert containers(engine, test_id) == [], "a sandbox container outlived its test"


@pytest.fixture
def start(
    request: pytest.FixtureRequest, backend: str, workspace: Path, uid: int
) -> Iterator[Start]:
    """Starts sandboxes on the module's `backend`, or on another one named (the local backend,
    for positive controls), and kills them all after the test."""
    spec = SandboxSpec(workspace=workspace, command="", env={}, limits=LIMITS, uid=uid)
    if backend == "docker":
        labels = {TEST_LABEL: request.getfixturevalue("test_id")}
        spec = replace(spec, image=request.getfixturevalue("image"), labels=labels)
    started: list[RunningSandbox] = []

    def start(command: str, on: str = backend, **overrides: Any) -> RunningSandbox:
        given = replace(spec, command=command, **overrides)
        sandbox = get_backend(on, allow_local=True).start(given)
        started.append(sandbox)
        return sandbox

    yield start
    for sandbox in started:
        sandbox.kill()


@pytest.fixture
def run(start: Start, backend: str) -> Run:
    """Runs a command to its end (30 s at most) and hands back its output and exit code."""

    def run(command: str, on: str = backend, **overrides: Any) -> Result:
        sandbox = start(command, on, **overrides)
        lines: list[OutputLine] = []
        deadline = time.monotonic() + 30
        while not sandbox.finished:
            assert time.monotonic() < deadline, f"sandbox still running: {command}"
            lines += sandbox.read(0.5)
        return Result(sandbox.wait(), lines, sandbox.oom_killed)

    return run


def containers(engine: DockerClient, test_id: str, *labels: str) -> list[str]:
    """Names of this test's containers, running or not, with all of `labels` ("key=value")."""
    wanted = [f"{TEST_LABEL}={test_id}", *labels]
    found = engine.api.containers(all=True, filters={"label": wanted})
    return [container["Names"][0].lstrip("/") for container in found]


def processes_of(uid: int) -> list[dict[str, str]]:
    """Live processes whose real uid is `uid`, read straight from the host's /proc."""
    return [p for p in live_processes() if p["uid"] == str(uid)]


def names_of_processes(uid: int) -> list[str]:
    return [p["name"] for p in processes_of(uid)]


def live_processes() -> Iterator[dict[str, str]]:
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


def read_until(sandbox: RunningSandbox, text: str, timeout: float = 10) -> list[OutputLine]:
    lines: list[OutputLine] = []
    deadline = time.monotonic() + timeout
    while not any(text in line.text for line in lines):
        assert time.monotonic() < deadline, f"never saw {text!r}: {lines}"
        lines += sandbox.read(0.2)
    return lines


def eventually(check: Callable[[], bool], timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "condition never became true"
        time.sleep(0.05)
