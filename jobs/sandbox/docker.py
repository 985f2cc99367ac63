"""The Docker backend: one hardened container per attempt, through the Docker Engine API.

The container runs the agent's image as spec.uid, the owner of the bind-mounted workspace, with
every capability dropped, no new privileges, a read-only root, a size-limited /tmp as its home,
cgroup limits on memory, CPU and processes, and no network (the agent's egress goes through
its door: egress/proxy.py).
The Docker socket is never mounted. Output is attached before the container starts, so no line
is lost, and split per stream exactly like bwrap's. The container is removed when the agent
ends or is killed; reap() removes those a dead worker left behind.
"""

from __future__ import annotations

import io
import logging
import os
import secrets
import signal
import subprocess
import tarfile
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import requests
from docker.client import DockerClient
from docker.errors import APIError, DockerException, ImageNotFound, NotFound
from docker.types import LogConfig, Mount, Ulimit

from jobs.sandbox.base import (
    FILE_SIZE_LIMIT,
    READER_JOIN_SECONDS,
    SANDBOX_HOME,
    LineSplitter,
    RunningSandbox,
    SandboxError,
    SandboxSpec,
    agent_env,
)
from jobs.sandbox.bwrap import _check_spec, _chown_tree

log = logging.getLogger(__name__)

# Every sandbox container carries it; reap() finds leftovers by it.
SANDBOX_LABEL = "agenthub.sandbox"
WORKSPACE = "/workspace"
HOSTNAME = "agenthub"
# The agent's home. Its pages count against the container's memory limit.
TMP_MB = 64
# Enough for `docker logs` on a live container, bounded so a chatty agent cannot fill the disk;
# the worker reads the output through attach, not from this log.
LOG_MAX_SIZE = "1m"
# What Docker reports for a container ended by SIGKILL; also used when it vanished before its
# exit code could be read (killed, or removed by someone else).
KILLED_EXIT_CODE = 128 + signal.SIGKILL
AVAILABLE_CACHE_SECONDS = 10.0
PING_TIMEOUT_SECONDS = 2
ENGINE_ERRORS = (DockerException, requests.RequestException)


class DockerBackend:
    name = "docker"

    def start(self, spec: SandboxSpec) -> SandboxContainer:
        _check_spec(spec)
        if not spec.image:
            raise SandboxError("the docker backend needs an image: set the agent's image")
        # As root the agent gets its own uid, as with bwrap; a worker that is not root (but may
        # use the Docker socket) cannot hand files to another uid, so the agent runs as it.
        as_root = os.geteuid() == 0
        if as_root:
            _chown_tree(spec.workspace, spec.uid)
        uid = spec.uid if as_root else os.getuid()
        with _engine_errors("could not start the sandbox container"):
            client = _client()
            try:
                container = client.containers.create(spec.image, **container_options(spec, uid))
            except ImageNotFound as exc:
                raise SandboxError(
                    f"image {spec.image!r} is not on this Docker Engine and AgentHub never pulls; "
                    "build it with `make sandbox-image` or set the agent's image"
                ) from exc
            sandbox = SandboxContainer(client, container.id, container.name)
            try:
                sandbox.launch()
            except BaseException:
                sandbox.kill()
                raise
        return sandbox


def container_options(spec: SandboxSpec, uid: int) -> dict[str, Any]:
    """The keyword arguments of containers.create() for `spec`, running as host `uid`."""
    limits = spec.limits
    mounts = [Mount(WORKSPACE, os.path.abspath(spec.workspace), type="bind")]
    mounts += [
        Mount(dest, os.path.abspath(source), type="bind", read_only=True)
        for dest, source in spec.ro_files.items()
    ]
    mounts += [
        Mount(dest, os.path.abspath(source), type="bind", read_only=not writable)
        for dest, (source, writable) in spec.dirs.items()
    ]
    return {
        "command": ["bash", "-c", spec.command],
        "name": f"agenthub-sandbox-{secrets.token_hex(6)}",
        "hostname": HOSTNAME,
        "user": f"{uid}:{uid}",
        "working_dir": WORKSPACE,
        "environment": agent_env(spec.env),
        "labels": {**spec.labels, SANDBOX_LABEL: "1"},
        "mounts": mounts,
        # Docker adds noexec to a tmpfs by default; /tmp is the agent's home (tools install
        # there, as under bwrap), and the workspace is executable anyway.
        "tmpfs": {SANDBOX_HOME: f"rw,exec,nosuid,nodev,size={TMP_MB}m,mode=1777"},
        "read_only": True,
        "network_mode": "none",  # what it may reach, it reaches through its door (egress/)
        "cap_drop": ["ALL"],
        "security_opt": ["no-new-privileges"],
        "init": True,  # reaps the agent's orphans, which bash -c would not
        "mem_limit": f"{limits.memory_mb}m",
        "memswap_limit": f"{limits.memory_mb}m",
        "nano_cpus": int(limits.cpus * 1e9),
        "pids_limit": limits.max_processes,
        "ulimits": [
            Ulimit(name="fsize", soft=FILE_SIZE_LIMIT, hard=FILE_SIZE_LIMIT),
            Ulimit(name="core", soft=0, hard=0),
        ],
        "log_config": LogConfig(
            type=LogConfig.types.JSON, config={"max-size": LOG_MAX_SIZE, "max-file": "1"}
        ),
        "auto_remove": False,  # the exit code and OOM flag are read before removal
    }


class SandboxContainer(RunningSandbox):
    """A sandbox that is a container. It is removed when the agent ends (once its exit state is
    read) or by kill(): RQ's process-group kill never reaches it, so kill() must."""

    def __init__(self, client: DockerClient, container_id: str, name: str) -> None:
        super().__init__(streams=2)
        self.id = container_id
        self.name = name
        self._api = client.api
        self._exit_code: int | None = None
        self._oom_killed = False
        self._exited = threading.Event()
        self._pid: int | None = None
        self._reader: threading.Thread | None = None

    def launch(self) -> None:
        """Attach, then start: the output stream exists before the agent's first line."""
        stream = self._api.attach(
            self.id, stream=True, stdout=True, stderr=True, logs=True, demux=True
        )
        self._reader = threading.Thread(
            target=self._follow, args=(stream,), daemon=True, name=self.name
        )
        self._reader.start()
        self._api.start(self.id)

    @property
    def pid(self) -> int:
        """The container's init as seen by the host (0 once it has exited)."""
        if self._pid is None:
            with _engine_errors(f"could not inspect {self.name}"):
                try:
                    self._pid = int(self._api.inspect_container(self.id)["State"]["Pid"])
                except NotFound:
                    return 0
        return self._pid

    @property
    def oom_killed(self) -> bool:
        return self._oom_killed

    def poll(self) -> int | None:
        return self._exit_code

    def wait(self, timeout: float | None = None) -> int:
        if not self._exited.wait(timeout) or self._exit_code is None:
            raise subprocess.TimeoutExpired(f"container {self.name}", timeout or 0)
        return self._exit_code

    def kill(self) -> None:
        """Kill and remove the container; return once it is gone. Idempotent."""
        with _engine_errors(f"could not kill {self.name}"):
            _gone_or_stopped(self._api.kill, self.id)
            _gone_or_stopped(self._api.remove_container, self.id, force=True)
        if self._reader is not None:
            self._reader.join(READER_JOIN_SECONDS)
        elif not self._exited.is_set():  # never attached: nothing will report the end
            self._exit_code = KILLED_EXIT_CODE
            self._exited.set()
            self._queue.put(None)
            self._queue.put(None)

    def _follow(self, stream: Iterable[tuple[bytes | None, bytes | None]]) -> None:
        """Reader thread: output until the container's streams close, then its exit state."""
        stdout = LineSplitter("stdout", self._queue)
        stderr = LineSplitter("stderr", self._queue)
        try:
            for out, err in stream:
                if out:
                    stdout.feed(out)
                if err:
                    stderr.feed(err)
        except (*ENGINE_ERRORS, OSError) as exc:
            # The stream broke (container removed, engine restarted); keep what arrived.
            log.warning("output of %s ended early: %s", self.name, exc)
        finally:
            self._exit_code, self._oom_killed = self._exit_state()
            self._exited.set()
            stdout.close()
            stderr.close()

    def _exit_state(self) -> tuple[int, bool]:
        """Wait for the exit, read the code and the OOM flag, then remove the container."""
        code, oom = KILLED_EXIT_CODE, False
        try:
            code = int(self._api.wait(self.id)["StatusCode"])
            oom = bool(self._api.inspect_container(self.id)["State"]["OOMKilled"])
        except ENGINE_ERRORS as exc:
            # Gone already: kill() or reap() removed it; a code read before that is kept.
            if not isinstance(exc, NotFound):
                log.warning("could not read the exit state of %s: %s", self.name, exc)
        try:
            _gone_or_stopped(self._api.remove_container, self.id, force=True)
        except ENGINE_ERRORS as exc:
            log.warning("could not remove %s; reap() will: %s", self.name, exc)
        return code, oom


def docker_available() -> bool:
    """Whether a Docker Engine answers, for choosing the backend automatically. Cached briefly:
    it is asked on every attempt and answers within PING_TIMEOUT_SECONDS."""
    global _available
    now = time.monotonic()
    if _available is None or now - _available[0] > AVAILABLE_CACHE_SECONDS:
        try:
            client = DockerClient.from_env(timeout=PING_TIMEOUT_SECONDS)
            try:
                answer = bool(client.ping())
            finally:
                client.close()
        except ENGINE_ERRORS:
            answer = False
        _available = (now, answer)
    return _available[1]


_available: tuple[float, bool] | None = None


def image_id(image: str) -> str:
    """The content-addressed ID (sha256:...) of `image`, for the reproducibility card; passing
    it back as an image runs exactly the same image again."""
    with _engine_errors(f"could not look up image {image!r}"):
        try:
            return str(_client().images.get(image).id)
        except ImageNotFound as exc:
            raise SandboxError(
                f"image {image!r} is not on this Docker Engine; build it with `make sandbox-image`"
                " (the AI presets' images: `make agent-images`)"
            ) from exc


def image_with(image: str, directory: Path | None, inside: str, tag: str) -> str:
    """`image` with `directory` copied in at `inside` (a repository environment, for taking an
    attempt home), tagged `tag`; `image` itself when there is no directory. Built from a
    context streamed from a temporary tar, so a large environment never sits in memory."""
    if directory is None:
        return image
    with _engine_errors("could not build the image"), tempfile.TemporaryFile() as context:
        with tarfile.open(fileobj=context, mode="w") as tar:
            dockerfile = f"FROM {image}\nCOPY environment {inside}\n".encode()
            info = tarfile.TarInfo("Dockerfile")
            info.size = len(dockerfile)
            tar.addfile(info, io.BytesIO(dockerfile))
            tar.add(directory, arcname="environment")
        context.seek(0)
        _client().images.build(fileobj=context, custom_context=True, tag=tag, rm=True)
    return tag


def save_image(image: str) -> Iterator[bytes]:
    """`docker save` of `image`, in chunks, named so `docker load` tags it again."""
    with _engine_errors(f"could not save image {image!r}"):
        yield from _client().images.get(image).save(chunk_size=1024 * 1024, named=True)


def reap(keep: Callable[[dict[str, str]], bool]) -> list[str]:
    """Remove every sandbox container whose labels `keep` rejects; return their names.

    Used by the reconciler with "is this attempt still running", so containers left by a dead
    worker or a restarted host do not run (or linger) forever.
    """
    removed = []
    with _engine_errors("could not list the sandbox containers"):
        api = _client().api
        for found in api.containers(all=True, filters={"label": f"{SANDBOX_LABEL}=1"}):
            if not keep(found.get("Labels") or {}):
                _gone_or_stopped(api.remove_container, found["Id"], force=True)
                removed.append(found["Names"][0].lstrip("/") if found["Names"] else found["Id"])
    return removed


def _gone_or_stopped(call: Callable[..., object], *args: object, **kwargs: object) -> None:
    """`call`, where a container that is already gone (404) or stopped (409) counts as done."""
    try:
        call(*args, **kwargs)
    except NotFound:
        pass
    except APIError as exc:
        if exc.status_code != 409:
            raise


_clients: dict[int, DockerClient] = {}
_clients_lock = threading.Lock()


def _client() -> DockerClient:
    """One client per process: an RQ work-horse is forked and must not share its parent's
    connections."""
    with _clients_lock:
        pid = os.getpid()
        if pid not in _clients:
            _clients.clear()
            _clients[pid] = DockerClient.from_env()
        return _clients[pid]


@contextmanager
def _engine_errors(doing: str) -> Iterator[None]:
    try:
        yield
    except ENGINE_ERRORS as exc:
        explanation = getattr(exc, "explanation", None) or exc
        raise SandboxError(
            f"{doing}: {explanation} (is the Docker Engine running and DOCKER_HOST right?)"
        ) from exc
