"""`make bench`'s API part on tiny numbers, so that its code paths cannot rot: the shape of what it
measures and prints, never how fast anything is."""

from __future__ import annotations

import pytest
from django.conf import settings

from agenthub import bench_api, bench_workspace
from jobs import overlay

pytestmark = pytest.mark.slow

PHASES = ["warm-up GET", "warm-up submit", "GET one job", "submit", "GET @2", "submit @2"]


def test_the_api_bench_measures_every_phase_on_make_runs_stack(capsys):
    sizes = bench_api.Sizes(
        warmup=1, sequential=3, concurrent=4, clients=(2,), in_process=2, jobs=2, patience=300
    )
    with bench_api.stack(settings.AGENTHUB_ASGI_SERVER, settings.AGENTHUB_DATA_DIR) as stack:
        report = bench_api.measure(stack, sizes, settings.AGENTHUB_ASGI_SERVER)

    assert list(report.latencies) == [*PHASES, "Redis PING", "websocket", "websocket @2"]
    assert [len(report.latencies[p]) for p in PHASES] == [1, 1, 3, 3, 4, 4]
    assert [len(report.latencies[p]) for p in ("websocket", "websocket @2")] == [3, 4]
    assert set(report.statuses) == {200, 202}
    assert len(report.in_process) == 2
    assert report.jobs_finished == 2 and report.jobs_per_second > 0
    assert [row[0] for row in bench_api.targets(report)] == [
        "submit p50 / GET p50 (sequential)",
        "in-process submit_job p50, ms",
        "trivial jobs per second",
    ]

    bench_api.show(report, sandbox_start=0.05)
    printed = capsys.readouterr().out
    assert "submit @2" in printed and "targets" in printed and "bwrap start" in printed
    assert not stack.data_dir.exists()  # a fresh data directory, removed after


def test_the_workspace_bench_measures_every_way_of_preparing_beside_cp(tmp_path, capsys):
    report = bench_workspace.measure(50, tmp_path, runs=1)

    assert list(report.seconds) == [
        "cp -a",
        "git worktree add",
        "clone + chown (before)",
        "snapshot, clone",
        "layered, first attempt",
        "snapshot, layered",
        "remove a layered workspace",
        "layered, next attempt",
    ]
    assert report.unavailable == ""
    assert overlay.mounts_under(tmp_path) == []
    bench_workspace.show(report)
    printed = capsys.readouterr().out
    assert "50 files" in printed and "1.0x (baseline)" in printed
