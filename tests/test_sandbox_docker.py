"""The Docker backend's own behaviour against a real Docker Engine: real containers, real cgroups.
What every real backend promises (output, environment, isolation, limits, kill) is tested once,
against bwrap and docker alike, in test_sandbox_contract.py.

No skip when the engine is missing: CI must fail loudly rather than pass without testing.
Each security test shows the attempt failing inside the container for the right reason and,
where that is meaningful, a positive control succeeding: proof that the test could fail.
"""

from __future__ import annotations

import io
import queue
import uuid
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from docker.client import DockerClient
from docker.errors import ImageNotFound

from jobs.sandbox import Limits, OutputLine, SandboxError, get_backend, image_id, reap
from jobs.sandbox.base import LineSplitter, _pump
from tests import sandbox_support as support
from tests.sandbox_support import LIMITS, TEST_LABEL, Run, Start, containers, read_until

engine, image, test_id = support.engine, support.image, support.test_id
workspace, start, run = support.workspace, support.start, support.run
# Away from test_sandbox.py's (300_000) and test_sandbox_contract.py's (500_000).
uid = support.uid_fixture(400_000)


@pytest.fixture
def backend() -> str:
    return "docker"


def _inspect(engine: DockerClient, test_id: str) -> dict[str, Any]:
    (name,) = containers(engine, test_id)
    attrs: dict[str, Any] = engine.api.inspect_container(name)
    return attrs


def test_the_engine_is_chosen_automatically_and_images_are_named_by_their_id(
    engine: DockerClient, image: str
) -> None:
    assert get_backend("docker").name == "docker"
    assert get_backend("auto").name == "docker"

    assert image_id(image) == engine.images.get(image).id
    assert image_id(image).startswith("sha256:")
    with pytest.raises(SandboxError, match="make sandbox-image"):
        image_id("agenthub-no-such-image:never")


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


def test_the_root_filesystem_is_read_only(run: Run) -> None:
    name = f"agenthub-probe-{uuid.uuid4().hex}"
    # /var/tmp is world-writable in the image: only a read-only root stops the write there.
    targets = [f"{directory}/{name}" for directory in ("/etc", "/usr", "/usr/bin", "/var/tmp")]

    result = run("; ".join(f"touch {target} && echo WROTE {target}" for target in targets))

    assert result.stdout == []
    assert len(result.stderr) == len(targets)
    assert all("Read-only file system" in line for line in result.stderr)


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
    read_until(process, "ready")

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


def test_a_memory_bomb_is_killed_by_the_kernel_and_reported_as_out_of_memory(run: Run) -> None:
    allocate = "python3 -c \"b = bytearray(512 * 1024**2); print('allocated')\""

    result = run(allocate, limits=replace(LIMITS, memory_mb=128))

    assert (result.exit_code, result.oom_killed) == (137, True)
    # Killed by the cgroup's OOM killer, not a MemoryError from a refused allocation.
    assert result.stdout == [] and result.stderr == []
    allowed = run(allocate, limits=replace(LIMITS, memory_mb=1024))
    assert (allowed.exit_code, allowed.oom_killed, allowed.stdout) == (0, False, ["allocated"])


def test_a_finished_agent_leaves_no_container_behind(
    run: Run, engine: DockerClient, test_id: str
) -> None:
    assert run("true").exit_code == 0

    assert containers(engine, test_id) == []


def test_reap_removes_orphaned_containers_and_keeps_the_running_ones(
    start: Start, engine: DockerClient, test_id: str
) -> None:
    orphan = start("echo ready; sleep 600", labels={TEST_LABEL: test_id, "agenthub.attempt": "1"})
    alive = start("echo ready; sleep 600", labels={TEST_LABEL: test_id, "agenthub.attempt": "2"})
    read_until(orphan, "ready")
    read_until(alive, "ready")

    def keep(labels: dict[str, str]) -> bool:
        # Other tests' and other users' containers are never this test's business.
        return labels.get(TEST_LABEL) != test_id or labels.get("agenthub.attempt") == "2"

    orphan_names = containers(engine, test_id, "agenthub.attempt=1")
    alive_names = containers(engine, test_id, "agenthub.attempt=2")

    removed = reap(keep)

    assert removed == orphan_names
    assert containers(engine, test_id) == alive_names
    assert orphan.wait(10) == 137
    assert alive.poll() is None


def test_a_missing_image_is_refused_without_pulling(
    start: Start, engine: DockerClient, test_id: str
) -> None:
    with pytest.raises(SandboxError, match="never pulls"):
        start("true", image="agenthub-no-such-image:never")

    assert containers(engine, test_id) == []
    with pytest.raises(ImageNotFound):
        engine.images.get("agenthub-no-such-image:never")
