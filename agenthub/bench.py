"""`make bench`: numbers measured in one run, each beside the baseline it is compared with.

The API on `make run`'s stack (agenthub/bench_api.py): submit and GET latencies sequentially and
from 20 and 50 concurrent clients, against a sequential GET of one job and a Redis round trip;
in-process `submit_job`; jobs per second through the workers. AGENTHUB_BENCH_SERVERS=uvicorn,daphne
measures the stack under each ASGI server in turn (default: AGENTHUB_ASGI_SERVER's).

Sandbox start overhead: start-to-exit of a trivial agent (`true`) on each backend, against a bare
subprocess, as medians over several runs.

Workspace preparation for 1k, 10k and 100k-file repositories (agenthub/bench_workspace.py; alone
with AGENTHUB_BENCH_ONLY=workspace).

Audit trail (on a scratch SQLite database): writing a chained entry against a plain insert of the
same row; `verify_audit` over 100,000 entries against reading them without checking; the streamed
CSV export of 100,000 entries, its peak memory against building the same lines in a list.
"""

from __future__ import annotations

import atexit
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

RUNS = int(os.environ.get("AGENTHUB_BENCH_RUNS", "15"))
AUDIT_ROWS = int(os.environ.get("AGENTHUB_BENCH_AUDIT_ROWS", "100000"))


def main() -> int:
    only = os.environ.get("AGENTHUB_BENCH_ONLY", "")
    if only not in ("", "workspace"):
        sys.exit(f"AGENTHUB_BENCH_ONLY={only!r}: the only part that runs alone is 'workspace'")
    from agenthub import bench_workspace

    if only == "workspace":
        bench_workspace.main()
        return 0
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "agenthub.settings")
    scratch = tempfile.mkdtemp(prefix="agenthub-bench-")
    atexit.register(shutil.rmtree, scratch, ignore_errors=True)
    os.environ["DATABASE_URL"] = f"sqlite:///{scratch}/bench.sqlite3"
    import django

    django.setup()
    from django.conf import settings

    from agenthub import bench_api

    bwrap_start = _sandbox_bench().get("bwrap")
    servers = os.environ.get("AGENTHUB_BENCH_SERVERS") or settings.AGENTHUB_ASGI_SERVER
    for server in servers.split(","):
        with bench_api.stack(server.strip(), settings.AGENTHUB_DATA_DIR) as stack:
            report = bench_api.measure(stack, bench_api.Sizes(), server.strip())
        bench_api.show(report, bwrap_start)
    _audit_bench()
    print()
    bench_workspace.main()
    return 0


def _sandbox_bench() -> dict[str, float]:
    """Prints the medians, and returns them by backend."""
    print(f"sandbox start-to-exit of `true`, median of {RUNS} runs")
    baseline = _median(_bare)
    print(f"  {'bare subprocess':18} {baseline * 1000:8.1f} ms   1.0x (baseline)")
    medians = {}
    for name in _backends():
        try:
            seconds = _median(partial(_sandboxed, name))
        except Exception as exc:  # noqa: BLE001 - report and go on with the other backends
            print(f"  {name:18} unavailable: {exc}")
            continue
        print(f"  {name:18} {seconds * 1000:8.1f} ms {seconds / baseline:6.1f}x")
        medians[name] = seconds
    return medians


def _audit_bench() -> None:
    import tracemalloc
    from itertools import islice

    from django.core.management import call_command
    from django.db import transaction

    from jobs import export, services
    from jobs.audit_chain import verify
    from jobs.models import AuditEntry, AuditHead, audit_hash

    call_command("migrate", verbosity=0)
    writes = 2000
    print(f"\naudit trail on SQLite, {writes} writes, {AUDIT_ROWS:,} entries to check and export")

    start = time.perf_counter()
    for i in range(writes):
        with transaction.atomic():
            AuditEntry.objects.bulk_create(
                [AuditEntry(seq=10**9 + i, actor_name="bench", action="bench.plain", data={"i": i})]
            )
    plain = (time.perf_counter() - start) / writes
    start = time.perf_counter()
    for i in range(writes):
        with transaction.atomic():
            services.audit("bench", "bench.chained", i=i)
    chained = (time.perf_counter() - start) / writes
    print(f"  {'plain insert':24} {plain * 1e6:8.0f} µs/entry   1.0x (baseline)")
    print(f"  {'chained audit()':24} {chained * 1e6:8.0f} µs/entry {chained / plain:6.1f}x")

    # A long, valid chain, written in bulk (as audit() would, without a transaction per row).
    AuditEntry.objects.filter(action="bench.plain")._raw_delete(AuditEntry.objects.db)
    head = AuditHead.objects.get()
    entries, prev = [], head.hash
    for seq in range(head.seq + 1, head.seq + 1 + AUDIT_ROWS - writes):
        entry = AuditEntry(seq=seq, actor_name="bench", action="bench.bulk", data={"n": seq})
        entry.prev_hash, entry.hash = prev, audit_hash(entry, prev)
        prev = entry.hash
        entries.append(entry)
    AuditEntry.objects.bulk_create(entries, batch_size=5000)
    AuditHead.objects.filter(pk=head.pk).update(seq=entries[-1].seq, hash=prev)
    del entries

    start = time.perf_counter()
    read = sum(1 for _ in AuditEntry.objects.order_by("seq").iterator(chunk_size=2000))
    reading = time.perf_counter() - start
    start = time.perf_counter()
    verdict = verify()
    checking = time.perf_counter() - start
    assert verdict.ok and verdict.checked == read, verdict
    print(f"  {'read all entries':24} {reading:8.2f} s   1.0x (baseline)")
    print(
        f"  {'verify_audit':24} {checking:8.2f} s {checking / reading:6.1f}x"
        f"   ({read / checking:,.0f} entries/s)"
    )

    def lines() -> export.Lines:
        rows = export.audit_rows(AuditEntry.objects.order_by("seq"))
        return export.csv_lines(rows, export.AUDIT_COLUMNS)

    tracemalloc.start()
    materialised = list(lines())
    _, whole = tracemalloc.get_traced_memory()
    count = len(materialised)
    del materialised
    tracemalloc.stop()
    tracemalloc.start()
    streamed, stream = 0, lines()
    while batch := list(islice(stream, 500)):
        streamed += len(batch)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert streamed == count
    print(f"  {'CSV export in a list':24} {whole / 2**20:8.1f} MiB peak   1.0x (baseline)")
    print(f"  {'CSV export streamed':24} {peak / 2**20:8.1f} MiB peak {peak / whole:6.2f}x")


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
