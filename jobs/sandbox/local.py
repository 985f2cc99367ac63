"""The local backend: the agent runs as a plain child process, WITHOUT isolation.

For development on machines without bubblewrap; get_backend() refuses it unless explicitly
allowed. It applies the same rlimits, but no uid switch, no network cut and no mounts.
"""

from __future__ import annotations

import subprocess

from jobs.sandbox.base import SandboxError, SandboxProcess, SandboxSpec, agent_env, limit_resources


class LocalBackend:
    name = "local"

    def start(self, spec: SandboxSpec) -> SandboxProcess:
        if not spec.workspace.is_dir():
            raise SandboxError(f"workspace {spec.workspace} must be an existing directory")
        try:
            popen = subprocess.Popen(
                ["/bin/bash", "-c", spec.command],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                cwd=spec.workspace,
                env=_host_paths(agent_env(spec.env), spec),
                start_new_session=True,
                preexec_fn=limit_resources(spec.limits),
            )
        except OSError as exc:
            raise SandboxError(f"could not start bash in {spec.workspace}: {exc}") from exc
        return SandboxProcess(popen, sweep_uid=None)


def _host_paths(env: dict[str, str], spec: SandboxSpec) -> dict[str, str]:
    """Nothing is mounted here, so a variable naming a ro_files path gets the host path instead
    (keeps $AGENTHUB_PROMPT_FILE working)."""
    return {key: str(spec.ro_files.get(value, value)) for key, value in env.items()}
