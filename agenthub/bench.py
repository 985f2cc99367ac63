"""`make bench`: numbers measured in one run, each beside the baseline it is compared with.

Sandbox start overhead: start-to-exit of a trivial agent (`true`) on each backend, against a bare
subprocess, as medians over several runs.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

RUNS = int(os.environ.get("AGENTHUB_BENCH_RUNS", "15"))


def main() -> int:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "agenthub.settings")
    import django

    django.setup()
    print(f"sandbox start-to-exit of `true`, median of {RUNS} runs")
    baseline = _median(_bare)
    print(f"  {'bare subprocess':18} {baseline * 1000:8.1f} ms   1.0x (baseline)")
    for name in _backends():
        try:
            seconds = _median(partial(_sandboxed, name))
        except Exception as exc:  # noqa: BLE001 - report and go on with the other backends
            print(f"  {name:18} unavailable: {exc}")
            continue
        print(f"  {name:18} {seconds * 1000:8.1f} ms {seconds / baseline:6.1f}x")
    return 0


def _backends() -> list[str]:
    from jobs.sandbox import docker_available

    return ["bwrap", *(["docker"] if docker_available() else [])]


def _median(run: Callable[[], None]) -> float:
    run()  # warm-up: page cache, image layers
    samples = []
    for _ in range(RUNS):
        start = time.perf_counter()
        run()
        samples.append(time.perf_counter() - start)
    return statistics.median(samples)


def _bare() -> None:
    subprocess.run(["bash", "-c", "true"], check=True)


def _sandboxed(backend: str) -> None:
    from django.conf import settings

    from jobs.sandbox import get_backend
    from jobs.sandbox.base import Limits, SandboxSpec

    with tempfile.TemporaryDirectory(dir=settings.AGENTHUB_DATA_DIR) as tmp:
        workspace = Path(tmp) / "workspace"
        workspace.mkdir()
        Path(tmp).chmod(0o755)
        spec = SandboxSpec(
            workspace=workspace,
            command="true",
            env={},
            limits=Limits(timeout_seconds=60, cpus=1, memory_mb=256, max_processes=64),
            uid=299_999,
            image=settings.AGENTHUB_SANDBOX_IMAGE if backend == "docker" else "",
        )
        proc = get_backend(backend).start(spec)
        try:
            if proc.wait(timeout=60) != 0:
                raise RuntimeError(f"{backend} exited with {proc.poll()}")
        finally:
            proc.kill()


if __name__ == "__main__":
    sys.exit(main())
