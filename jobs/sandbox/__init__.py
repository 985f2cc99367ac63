"""Run an untrusted agent command in a sandbox: one module per backend behind one interface."""

from __future__ import annotations

from pathlib import Path

from jobs.sandbox.base import (
    Backend,
    Limits,
    OutputLine,
    RunningSandbox,
    SandboxError,
    SandboxProcess,
    SandboxSpec,
)
from jobs.sandbox.bwrap import BwrapBackend, check_usable, find_bwrap
from jobs.sandbox.docker import DockerBackend, docker_available, image_id, reap
from jobs.sandbox.local import LocalBackend

__all__ = [
    "Backend",
    "Limits",
    "OutputLine",
    "RunningSandbox",
    "SandboxError",
    "SandboxProcess",
    "SandboxSpec",
    "check_backend",
    "docker_available",
    "find_bwrap",
    "get_backend",
    "image_id",
    "reap",
]

BACKENDS = ("auto", "docker", "bwrap", "local")


def get_backend(name: str, *, allow_local: bool = False) -> Backend:
    """The backend called `name`; "auto" is docker where a Docker Engine answers, else bwrap."""
    if name == "auto":
        name = "docker" if docker_available() else "bwrap"
    if name == "docker":
        return DockerBackend()
    if name == "bwrap":
        return BwrapBackend()
    if name == "local":
        if not allow_local:
            raise SandboxError(
                "the local backend runs agents without isolation; "
                "set AGENTHUB_ALLOW_LOCAL_SANDBOX=1 to allow it"
            )
        return LocalBackend()
    raise SandboxError(f"unknown sandbox backend {name!r}: choose one of {', '.join(BACKENDS)}")


def check_backend(name: str, data_dir: Path, *, allow_local: bool = False) -> None:
    """Refuse, with the remedy, a sandbox that would fail every job: called at start-up by
    `make run` (agenthub.run) and by each worker (agenthub_worker). bwrap is checked when it is
    chosen, or when "auto" has no Docker Engine to choose instead."""
    if name == "local":
        get_backend(name, allow_local=allow_local)
    elif name == "bwrap" or (name == "auto" and not docker_available()):
        check_usable(data_dir)
