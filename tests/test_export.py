"""Exports from the admin: exactly the rows the changelist's filters select, as CSV or JSON lines,
streamed in bounded memory, for staff only."""

from __future__ import annotations

import csv
import gc
import io
import json
import tracemalloc
from datetime import datetime, timedelta
from typing import Any

import pytest
from asgiref.sync import async_to_sync
from django.db.models import Max
from django.http import StreamingHttpResponse
from django.utils import timezone

from jobs import export, services
from jobs.models import Attempt, AttemptStatus, AuditEntry, Job, Team
from tests.conftest import _member

pytestmark = pytest.mark.django_db


def aware(day: str) -> datetime:
    return timezone.make_aware(datetime.fromisoformat(day))


def finished_job(user: Any, *, title: str, files: list[str], day: str) -> Job:
    job = services.submit_job(user, repo="demo", agent="shell", prompt=f"echo {title}", title=title)
    attempt = job.attempts.get()
    services.claim_attempt(attempt.pk, "test")
    stats = [
        {"path": p, "old_path": None, "status": "A", "added": 1, "deleted": 0, "binary": False}
        for p in files
    ]
    Attempt.objects.filter(pk=attempt.pk).update(
        result_commit=job.base_commit, diff_hash="a" * 64, files=stats
    )
    services.finish_attempt(attempt.pk, AttemptStatus.SUCCEEDED, exit_code=0)
    Job.objects.filter(pk=job.pk).update(created_at=aware(day))
    job.refresh_from_db()
    return job


def read(response: StreamingHttpResponse) -> str:
    """The whole body, read the way the ASGI server reads it: asynchronously, chunk by chunk."""
    assert response.streaming

    async def collect() -> bytes:
        return b"".join([chunk async for chunk in response.streaming_content])

    return async_to_sync(collect)().decode()


def csv_rows(response: StreamingHttpResponse) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(read(response), newline="")))


def jsonl_rows(response: StreamingHttpResponse) -> list[dict[str, Any]]:
    return [json.loads(line) for line in read(response).splitlines()]


@pytest.fixture
def jobs(alice, bob, team, repo) -> dict[str, Job]:
    erin = _member("erin", team, "reviewer")
    made = {
        "before": finished_job(alice, title="before", files=["a.py"], day="2026-02-27"),
        "first": finished_job(alice, title="first", files=["b.py", "docs/b.md"], day="2026-03-01"),
        "formula": finished_job(alice, title="=HYPERLINK(1)", files=[], day="2026-03-05"),
        "last": finished_job(alice, title="last", files=["c.py"], day="2026-03-07"),
        "after": finished_job(alice, title="after", files=["d.py"], day="2026-03-08"),
    }
    services.review_job(bob, made["first"], "approve")
    services.review_job(erin, made["first"], "approve")
    services.review_job(bob, made["last"], "reject")
    return made


RANGE = {"created_at__from": "2026-03-01", "created_at__to": "2026-03-07"}


@pytest.mark.parametrize("fmt", ["csv", "jsonl"])
def test_the_job_export_holds_exactly_the_filtered_rows(admin_client, jobs, fmt):
    response = admin_client.get(f"/admin/jobs/job/export.{fmt}", RANGE)
    assert response.status_code == 200
    rows = csv_rows(response) if fmt == "csv" else jsonl_rows(response)

    expected = Job.objects.filter(
        created_at__gte=aware("2026-03-01"), created_at__lt=aware("2026-03-08")
    ).order_by("-created_at")
    assert [r["public_id"] for r in rows] == [j.public_id for j in expected]
    assert [r["public_id"] for r in rows] == [
        jobs[k].public_id for k in ("last", "formula", "first")
    ]
    assert list(rows[0]) == list(export.JOB_COLUMNS)


def test_job_rows_name_approvers_attempts_and_files(admin_client, jobs):
    rows = jsonl_rows(admin_client.get("/admin/jobs/job/export.jsonl", RANGE))
    first = next(r for r in rows if r["title"] == "first")
    assert first["approvers"] == ["bob", "erin"]
    assert first["files_touched"] == ["b.py", "docs/b.md"]
    assert first["attempts"] == 1
    assert first["team"] == "demo" and first["submitter"] == "alice"
    assert first["prompt"] == "echo first" and first["base_commit"] == jobs["first"].base_commit
    assert first["created_at"] == "2026-03-01T00:00:00+00:00"
    rejected = next(r for r in rows if r["title"] == "last")
    assert rejected["approvers"] == [] and rejected["status"] == "rejected"


def test_csv_cells_cannot_start_a_spreadsheet_formula(admin_client, jobs):
    csv_row = next(
        r
        for r in csv_rows(admin_client.get("/admin/jobs/job/export.csv", RANGE))
        if "HYPER" in r["title"]
    )
    assert csv_row["title"] == "'=HYPERLINK(1)"
    assert csv_row["files_touched"] == "[]"
    jsonl_row = next(
        r
        for r in jsonl_rows(admin_client.get("/admin/jobs/job/export.jsonl", RANGE))
        if "HYPER" in r["title"]
    )
    assert jsonl_row["title"] == "=HYPERLINK(1)"  # JSON lines keep the exact text


def test_the_export_follows_search_and_other_filters_too(admin_client, jobs, bob):
    rows = jsonl_rows(admin_client.get("/admin/jobs/job/export.jsonl", {"touched": "docs/"}))
    assert [r["title"] for r in rows] == ["first"]
    rows = jsonl_rows(admin_client.get("/admin/jobs/job/export.jsonl", {"q": "after"}))
    assert [r["title"] for r in rows] == ["after"]
    rows = jsonl_rows(admin_client.get("/admin/jobs/job/export.jsonl", {"reviewer": bob.pk}))
    assert sorted(r["title"] for r in rows) == ["first", "last"]


def test_changelists_link_their_exports_with_the_current_filters(admin_client, jobs):
    body = admin_client.get("/admin/jobs/job/", {"touched": "b.py", "q": "x"}).content.decode()
    assert 'href="/admin/jobs/job/export.csv?touched=b.py&amp;q=x"' in body
    assert 'href="/admin/jobs/job/export.jsonl?touched=b.py&amp;q=x"' in body
    body = admin_client.get("/admin/jobs/auditentry/").content.decode()
    assert 'href="/admin/jobs/auditentry/export.csv"' in body
    assert 'href="/admin/jobs/auditentry/export.jsonl"' in body


def old_entries(team: Team, days: list[str]) -> list[AuditEntry]:
    """Entries written on given days (the chain's hashes do not matter to the export)."""
    start = (AuditEntry.objects.aggregate(n=Max("seq"))["n"] or 0) + 1000
    return AuditEntry.objects.bulk_create(
        AuditEntry(
            seq=start + i,
            ts=aware(day),
            actor_name="archivist",
            action="test.old",
            team=team,
            target=f"entry {i}",
            data={"day": day, "note": 'a, "quoted"\nline'},
            prev_hash="p" * 64,
            hash="h" * 64,
        )
        for i, day in enumerate(days)
    )


@pytest.mark.parametrize("fmt", ["csv", "jsonl"])
def test_the_audit_export_holds_exactly_the_filtered_rows(admin_client, team, fmt):
    old_entries(team, ["2026-01-31T23:59:59", "2026-02-01", "2026-02-10T12:00", "2026-02-11"])
    params = {"ts__from": "2026-02-01", "ts__to": "2026-02-10", "team__id__exact": team.pk}
    response = admin_client.get(f"/admin/jobs/auditentry/export.{fmt}", params)
    rows = csv_rows(response) if fmt == "csv" else jsonl_rows(response)

    expected = AuditEntry.objects.filter(
        ts__gte=aware("2026-02-01"), ts__lt=aware("2026-02-11"), team=team
    ).order_by("seq")
    assert [int(r["seq"]) for r in rows] == [e.seq for e in expected]
    assert [r["target"] for r in rows] == ["entry 1", "entry 2"]
    assert list(rows[0]) == list(export.AUDIT_COLUMNS)
    data = json.loads(rows[0]["data"]) if fmt == "csv" else rows[0]["data"]
    assert data == {"day": "2026-02-01", "note": 'a, "quoted"\nline'}
    assert (rows[0]["team"], rows[0]["prev_hash"], rows[0]["hash"]) == ("demo", "p" * 64, "h" * 64)


def test_audit_export_carries_the_search(admin_client, alice, repo):
    job = services.submit_job(alice, repo="demo", agent="shell", prompt="true")
    rows = jsonl_rows(admin_client.get("/admin/jobs/auditentry/export.jsonl", {"q": job.public_id}))
    assert [r["seq"] for r in rows] == list(
        AuditEntry.objects.filter(job=job).order_by("seq").values_list("seq", flat=True)
    )
    assert rows[0]["action"] == "job.submit" and rows[0]["actor"] == "alice"


def test_exports_are_for_staff_only(client, alice):
    client.force_login(alice)
    response = client.get("/admin/jobs/auditentry/export.csv")
    assert response.status_code == 302 and response["Location"].startswith("/admin/login/")
    assert not export_entries()


def test_an_unknown_format_or_a_bad_filter_is_refused(admin_client):
    assert admin_client.get("/admin/jobs/auditentry/export.xlsx").status_code == 404
    response = admin_client.get("/admin/jobs/auditentry/export.csv", {"ts__from": "yesterday"})
    assert response.status_code == 400
    assert "ts__from='yesterday' is not a date: expected YYYY-MM-DD." in response.content.decode()
    assert not export_entries()  # nothing was exported


# --- exports are audited -----------------------------------------------------------------------


def export_entries() -> list[AuditEntry]:
    return list(AuditEntry.objects.filter(action__endswith=".export").order_by("seq"))


@pytest.mark.parametrize("fmt", ["csv", "jsonl"])
def test_a_job_export_is_one_audit_entry_naming_the_actor_format_and_filters(
    admin_client, admin_user, jobs, fmt
):
    params = {**RANGE, "touched": ".py", "o": "7"}  # o=7: by created_at, oldest first
    response = admin_client.get(f"/admin/jobs/job/export.{fmt}", params)

    # Written when the export starts, before a single row has been streamed.
    [entry] = export_entries()
    assert (entry.action, entry.actor, entry.actor_name) == ("jobs.export", admin_user, "admin")
    assert entry.data == {"format": fmt, "filters": params}
    assert (entry.team, entry.job) == (None, None)
    rows = csv_rows(response) if fmt == "csv" else jsonl_rows(response)
    assert [r["title"] for r in rows] == ["first", "last"]
    assert export_entries() == [entry]


@pytest.mark.parametrize("fmt", ["csv", "jsonl"])
def test_an_audit_export_is_one_audit_entry_and_not_one_of_its_own_rows(
    admin_client, admin_user, alice, repo, fmt
):
    services.submit_job(alice, repo="demo", agent="shell", prompt="true")
    before = list(AuditEntry.objects.order_by("seq").values_list("seq", flat=True))

    everything = admin_client.get(f"/admin/jobs/auditentry/export.{fmt}")
    [first] = export_entries()
    rows = csv_rows(everything) if fmt == "csv" else jsonl_rows(everything)
    assert [int(r["seq"]) for r in rows] == before  # all of the trail, but not this export

    params = {"action__exact": "audit.export"}
    exports = admin_client.get(f"/admin/jobs/auditentry/export.{fmt}", params)
    first_again, second = export_entries()
    rows = csv_rows(exports) if fmt == "csv" else jsonl_rows(exports)
    assert [int(r["seq"]) for r in rows] == [first.seq]  # the earlier export, not this one

    assert first_again == first
    assert (first.action, first.actor, first.data) == (
        "audit.export",
        admin_user,
        {"format": fmt, "filters": {}},
    )
    assert (second.action, second.actor, second.data) == (
        "audit.export",
        admin_user,
        {"format": fmt, "filters": params},
    )
    assert rows[0]["actor"] == "admin" and rows[0]["action"] == "audit.export"


def test_a_repeated_query_parameter_is_recorded_with_all_its_values(admin_client, jobs):
    response = admin_client.get("/admin/jobs/job/export.jsonl?q=first&q=last")
    assert response.status_code == 200
    [entry] = export_entries()
    assert entry.data["filters"] == {"q": ["first", "last"]}


# Measured with tracemalloc, materialising 100,000 entries takes about 230 MiB as model instances,
# 140 MiB as export rows and still 36 MiB as finished CSV lines (over 350 bytes a row); streaming
# them holds a few chunks of export.CHUNK_SIZE rows at a time (about 5 MiB) however many match.
# So the exports stream two sizes, several chunks apart: the peak must stay under a bound and
# must not grow with the rows - which materialising even the finished lines would make it do
# by more than the extra bytes sent.
SIZES = (5_000, 20_000)
PEAK_BOUND = 12 * 1024 * 1024


@pytest.mark.database  # iterator(chunk_size=...) streams through the backend's own cursor
def test_audit_exports_stream_in_memory_that_does_not_grow_with_the_rows(admin_client, team):
    # Past the chain's head, like old_entries: each export appends an entry at the head.
    start = (AuditEntry.objects.aggregate(n=Max("seq"))["n"] or 0) + 1000
    day = aware("2026-01-15")
    AuditEntry.objects.bulk_create(
        (
            AuditEntry(
                seq=start + i,
                ts=day + timedelta(seconds=i),
                actor_name="loader",
                action=f"test.bulk-{rows}",
                team=team,
                target=f"row {i}",
                before="queued",
                after="running",
                data={"i": i, "why": "a fairly ordinary amount of detail for one entry"},
                prev_hash=f"{i:064x}",
                hash=f"{i + 1:064x}",
            )
            for rows, first in zip(SIZES, (0, SIZES[0]), strict=True)
            for i in range(first, first + rows)
        ),
        batch_size=5000,
    )
    for fmt, header in (("csv", 1), ("jsonl", 0)):
        measured = {}
        for rows in SIZES:
            response = admin_client.get(
                f"/admin/jobs/auditentry/export.{fmt}", {"action__exact": f"test.bulk-{rows}"}
            )
            assert response.status_code == 200
            lines, size, peak = stream_measured(response)
            assert lines == rows + header, fmt
            assert peak < PEAK_BOUND, f"{fmt}: peak {peak / 2**20:.1f} MiB streaming {rows} rows"
            measured[rows] = size, peak
        (small_size, small_peak), (large_size, large_peak) = measured.values()
        extra_bytes = large_size - small_size
        # Memory that does not grow with the rows: the extra rows left at most a tenth of
        # their bytes behind (noise; holding them would leave more than all of them).
        assert large_peak - small_peak < extra_bytes / 10, (
            f"{fmt}: peak {small_peak / 2**20:.1f} MiB for {SIZES[0]} rows,"
            f" {large_peak / 2**20:.1f} MiB for {SIZES[1]}"
        )


def stream_measured(response: StreamingHttpResponse) -> tuple[int, int, int]:
    """Lines and bytes streamed, and the peak of memory allocated while streaming them."""

    async def consume() -> tuple[int, int]:
        lines = size = 0
        async for chunk in response.streaming_content:
            lines += chunk.count(b"\n")
            size += len(chunk)
        return lines, size

    gc.collect()
    tracemalloc.start()
    try:
        lines, size = async_to_sync(consume)()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return lines, size, peak
