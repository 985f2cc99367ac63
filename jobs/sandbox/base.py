"""The interface every sandbox backend implements, and the process handle they all return.

Pure core: no Django, plain arguments. The worker builds a SandboxSpec, calls Backend.start(),
pumps RunningSandbox.read() into events, and calls kill() when the wall-clock limit passes.
"""

from __future__ import annotations

import codecs
import math
import os
import queue
import resource
import signal
import subprocess
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Protocol

MAX_LINE_BYTES = 64 * 1024
FILE_SIZE_LIMIT = 1024**3
NICENESS = 10
CPU_GRACE_SECONDS = 5
KILL_DEADLINE_SECONDS = 10.0
LEADER_GRACE_SECONDS = 1.0
READER_JOIN_SECONDS = 5.0
SANDBOX_HOME = "/tmp"  # noqa: S108 - inside the sandbox, a private size-limited tmpfs
DEFAULT_ENV = {"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": SANDBOX_HOME, "LANG": "C.UTF-8"}


@dataclass(frozen=True)
class Limits:
    timeout_seconds: int
    cpus: float
    memory_mb: int
    max_processes: int


@dataclass(frozen=True)
class SandboxSpec:
    workspace: Path
    command: str
    env: dict[str, str]
    limits: Limits
    uid: int = 100000
    ro_files: dict[str, Path] = field(default_factory=dict)
    # Host directories mounted whole: sandbox path -> (host path, writable). A writable one
    # must already belong to `uid` (jobs/environments.py hands the environment to it).
    dirs: dict[str, tuple[Path, bool]] = field(default_factory=dict)
    image: str = ""  # docker only: the image (name or ID) the container runs
    # docker only: set on the container, found again by reap(); e.g. {"agenthub.attempt": "12"}
    labels: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class OutputLine:
    ts: datetime
    stream: str
    text: str


class SandboxError(Exception):
    """The backend is unusable or refused the spec; the message says why and what to do."""


class RunningSandbox(ABC):
    """A started sandbox as the worker sees it: its output lines, its exit code, and a kill that
    leaves nothing behind. Reader threads put each stream's lines on one queue and a None when
    that stream ends; read() hands them over."""

    def __init__(self, streams: int) -> None:
        self._queue: queue.Queue[OutputLine | None] = queue.Queue()
        self._open_streams = streams

    def read(self, timeout: float) -> list[OutputLine]:
        lines: list[OutputLine] = []
        deadline = time.monotonic() + timeout
        while self._open_streams:
            try:
                if lines:
                    item = self._queue.get_nowait()
                else:
                    item = self._queue.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                break
            if item is None:
                self._open_streams -= 1
            else:
                lines.append(item)
        return lines

    @property
    def finished(self) -> bool:
        """The sandbox has exited and read() has handed over its last line."""
        return self.poll() is not None and self._open_streams == 0

    @property
    def oom_killed(self) -> bool:
        """The kernel's out-of-memory killer ended a process of the sandbox (when known)."""
        return False

    @property
    @abstractmethod
    def pid(self) -> int: ...

    @abstractmethod
    def poll(self) -> int | None: ...

    @abstractmethod
    def wait(self, timeout: float | None = None) -> int:
        """Raises subprocess.TimeoutExpired if the sandbox is still running after `timeout`."""

    @abstractmethod
    def kill(self) -> None:
        """Kill every process of the sandbox and return once none is left; idempotent."""


class SandboxProcess(RunningSandbox):
    """A sandbox that is a host process tree (bwrap, local).

    `sweep_uid` is the host uid every sandboxed process runs as (None when the worker is not
    root, or for the local backend); kill() hunts down anything still running as it.
    """

    def __init__(self, popen: subprocess.Popen[bytes], *, sweep_uid: int | None) -> None:
        assert popen.stdout is not None and popen.stderr is not None
        super().__init__(streams=2)
        self._popen = popen
        self._sweep_uid = sweep_uid
        self._readers = [
            threading.Thread(target=_pump, args=(stream, name, self._queue), daemon=True)
            for stream, name in ((popen.stdout, "stdout"), (popen.stderr, "stderr"))
        ]
        for reader in self._readers:
            reader.start()

    @property
    def pid(self) -> int:
        return self._popen.pid

    def poll(self) -> int | None:
        return self._popen.poll()

    def wait(self, timeout: float | None = None) -> int:
        return self._popen.wait(timeout)

    def kill(self) -> None:
        """With a sweep uid the inside goes first: bwrap then reaps its own child and exits, so
        no orphaned zombie is left for an init that may never reap it (the worker may be PID 1).
        """
        if self._sweep_uid is None:
            self._kill_group()
        else:
            self._kill_all("Uid", self._sweep_uid)
        try:
            self._popen.wait(LEADER_GRACE_SECONDS)
        except subprocess.TimeoutExpired:
            self._kill_group()
            self._popen.wait()
        if self._sweep_uid is not None:
            self._kill_all("Uid", self._sweep_uid)
        for reader in self._readers:
            reader.join(READER_JOIN_SECONDS)

    def _kill_group(self) -> None:
        # Only while the leader is unreaped is the group id surely still ours, not a reused pid.
        if self._popen.returncode is None:
            _signal(os.killpg, self.pid)
            self._kill_all("NSpgid", self.pid)

    def _kill_all(self, key: str, value: int) -> None:
        deadline = time.monotonic() + KILL_DEADLINE_SECONDS
        while strays := [pid for pid in _live_pids(key, value) if pid != self.pid]:
            if time.monotonic() > deadline:
                raise SandboxError(f"processes {strays} survived SIGKILL; check for stuck I/O")
            for pid in strays:
                _signal(os.kill, pid)
            time.sleep(0.01)


class Backend(Protocol):
    name: str

    def start(self, spec: SandboxSpec) -> RunningSandbox: ...


def agent_env(env: dict[str, str]) -> dict[str, str]:
    return {**DEFAULT_ENV, **env}


def limit_resources(limits: Limits) -> Callable[[], None]:
    """Return a preexec_fn applying `limits` to the child, between fork and exec.

    The values are computed here, in the parent, so the child only makes system calls.
    RLIMIT_NPROC counts processes per real uid, which is why each attempt gets its own uid.
    """
    wanted = {
        resource.RLIMIT_NPROC: limits.max_processes,
        resource.RLIMIT_AS: limits.memory_mb * 1024 * 1024,
        resource.RLIMIT_CPU: math.ceil(limits.timeout_seconds * limits.cpus) + CPU_GRACE_SECONDS,
        resource.RLIMIT_FSIZE: FILE_SIZE_LIMIT,
        resource.RLIMIT_CORE: 0,
    }
    settings = [(res, (limit, limit)) for res, limit in _within_hard_limits(wanted).items()]

    def preexec() -> None:
        for res, soft_and_hard in settings:
            resource.setrlimit(res, soft_and_hard)
        os.nice(NICENESS)

    return preexec


def _within_hard_limits(wanted: dict[int, int]) -> dict[int, int]:
    # Only root may raise a hard limit; everyone else gets the lower of the two.
    hard = {res: resource.getrlimit(res)[1] for res in wanted}
    return {
        res: value if hard[res] == resource.RLIM_INFINITY else min(value, hard[res])
        for res, value in wanted.items()
    }


class LineSplitter:
    """Turns one stream's bytes, in chunks of any size, into OutputLines; a line over
    MAX_LINE_BYTES arrives in pieces. Shared by the pipe readers and the container reader."""

    def __init__(self, name: str, out: queue.Queue[OutputLine | None]) -> None:
        self._name = name
        self._out = out
        self._buffer = b""
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._after_split = False

    def feed(self, data: bytes) -> None:
        # Indexes, not re-slicing: a container hands over many lines per chunk.
        buffer = self._buffer + data if self._buffer else data
        start = 0
        while True:
            end = buffer.find(b"\n", start, start + MAX_LINE_BYTES) + 1
            if not end:
                if len(buffer) - start < MAX_LINE_BYTES:
                    break
                end = start + MAX_LINE_BYTES
            self.feed_piece(buffer[start:end])
            start = end
        self._buffer = buffer[start:]

    def close(self) -> None:
        """The stream ended: hand over an unterminated last line, then the end marker."""
        if self._buffer:
            self.feed_piece(self._buffer)
            self._buffer = b""
        tail = self._decoder.decode(b"", final=True)
        if tail:
            self._put(tail)
        self._out.put(None)

    def feed_piece(self, piece: bytes) -> None:
        """One line, or one piece of a long one: at most MAX_LINE_BYTES, ending at the first
        newline if it has one - what readline(MAX_LINE_BYTES) returns."""
        complete = piece.endswith(b"\n")
        text = self._decoder.decode(piece.removesuffix(b"\n"), final=complete)
        if complete:
            text = text.removesuffix("\r")
        # A newline right after a full-size piece ends that line; it is not an empty line.
        if text or (complete and not self._after_split):
            self._put(text)
        self._after_split = not complete

    def _put(self, text: str) -> None:
        self._out.put(OutputLine(ts=datetime.now(UTC), stream=self._name, text=text))


def _pump(stream: IO[bytes], name: str, out: queue.Queue[OutputLine | None]) -> None:
    splitter = LineSplitter(name, out)
    with stream:
        for piece in iter(lambda: stream.readline(MAX_LINE_BYTES), b""):
            splitter.feed_piece(piece)
    splitter.close()


def _live_pids(key: str, value: int) -> list[int]:
    """Processes whose /proc status `key` ("Uid": real uid, "NSpgid": group) starts with
    `value`, except zombies: they are dead, only not yet reaped."""
    found = []
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            status = _read_status(entry.path)
            alive = not status.get("State", "Z").startswith(("Z", "X"))
            if alive and status.get(key, "").split()[:1] == [str(value)]:
                found.append(int(entry.name))
    return found


def _read_status(proc_dir: str) -> dict[str, str]:
    try:
        with open(f"{proc_dir}/status", encoding="utf-8", errors="replace") as fh:
            pairs = (line.split(":\t", 1) for line in fh if ":\t" in line)
            return {key: value for key, value in pairs}
    except (FileNotFoundError, ProcessLookupError):
        return {}


def _signal(send: Callable[[int, int], None], target: int) -> None:
    try:
        send(target, signal.SIGKILL)
    except ProcessLookupError:
        pass
