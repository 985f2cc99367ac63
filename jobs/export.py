"""Exports of the job history and the audit trail as CSV or JSON lines, streamed.

The admin's export views (jobs.admin.history) hand these the queryset their changelist selects, so
an export holds exactly the rows on screen, across all pages. Rows are read with
`iterator(chunk_size=...)` and written as they come: memory stays bounded however many rows match.
Each export is one audit entry (`audited`), written before the first row is read.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator
from datetime import datetime
from typing import Any

from django.db.models import Prefetch, QuerySet
from django.http import QueryDict, StreamingHttpResponse
from django.utils import timezone

from jobs import services
from jobs.models import Attempt, AuditEntry, Decision, Job, Review
from jobs.streaming import Lines, batched

CHUNK_SIZE = 2000  # rows fetched from the database at a time

JOB_COLUMNS = (
    "public_id",
    "created_at",
    "team",
    "repository",
    "agent",
    "status",
    "submitter",
    "title",
    "prompt",
    "base_commit",
    "merge_commit",
    "approvers",
    "attempts",
    "files_touched",
)
AUDIT_COLUMNS = (
    "seq",
    "ts",
    "actor",
    "action",
    "team",
    "job",
    "target",
    "before",
    "after",
    "data",
    "prev_hash",
    "hash",
)
FORMATS = {
    "csv": ("text/csv; charset=utf-8", "csv"),
    "jsonl": ("application/x-ndjson; charset=utf-8", "jsonl"),
}
# A spreadsheet runs a cell starting with one of these as a formula; prompts and titles are
# untrusted, so CSV cells get a leading apostrophe. JSON lines keep the exact text.
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def audited(user: Any, name: str, fmt: str, query: QueryDict) -> AuditEntry:
    """The audit entry of one export, `<name>.export` (`jobs.export`, `audit.export`): who, which
    format, and the query string that chose the rows (filters, search, date range, ordering) as
    given, a repeated parameter as a list. Written when the export starts: the rows stream after
    the view has returned, and a download cut short has still handed out what it sent."""
    filters = {key: values[0] if len(values) == 1 else values for key, values in query.lists()}
    return services.audit(user, f"{name}.export", format=fmt, filters=filters)


def job_rows(jobs: QuerySet[Job]) -> Iterator[dict[str, Any]]:
    attempts = Attempt.objects.only("id", "job", "files")
    approvals = Review.objects.filter(decision=Decision.APPROVE).select_related("reviewer")
    found = jobs.select_related("team", "repository", "agent", "submitter").prefetch_related(
        Prefetch("attempts", queryset=attempts),
        Prefetch("attempts__reviews", queryset=approvals),
    )
    for job in found.iterator(chunk_size=CHUNK_SIZE):
        tried = list(job.attempts.all())
        yield {
            "public_id": job.public_id,
            "created_at": job.created_at,
            "team": job.team.name,
            "repository": job.repository.name,
            "agent": job.agent.name,
            "status": job.status,
            "submitter": job.submitter.get_username(),
            "title": job.title,
            "prompt": job.prompt,
            "base_commit": job.base_commit,
            "merge_commit": job.merge_commit,
            "approvers": sorted(
                {r.reviewer.get_username() for a in tried for r in a.reviews.all()}
            ),
            "attempts": len(tried),
            "files_touched": sorted(_paths(tried)),
        }


def _paths(attempts: list[Attempt]) -> set[str]:
    paths: set[str] = set()
    for attempt in attempts:
        for stat in attempt.files or []:
            paths.update(p for p in (stat.get("path"), stat.get("old_path")) if p)
    return paths


def audit_rows(entries: QuerySet[AuditEntry]) -> Iterator[dict[str, Any]]:
    # Plain values, not model instances: the audit trail is the export that runs to millions.
    sources = {"actor": "actor_name", "team": "team__name", "job": "job__public_id"}
    fields = [sources.get(name, name) for name in AUDIT_COLUMNS]
    for values in entries.values_list(*fields).iterator(chunk_size=CHUNK_SIZE):
        row = dict(zip(AUDIT_COLUMNS, values, strict=True))
        row["team"], row["job"] = row["team"] or "", row["job"] or ""
        yield row


class _Echo:
    """The pseudo-buffer of Django's "Streaming large CSV files": csv.writer returns each line."""

    def write(self, value: str) -> str:
        return value


def csv_lines(rows: Iterator[dict[str, Any]], columns: tuple[str, ...]) -> Lines:
    writer = csv.writer(_Echo())
    yield writer.writerow(columns)
    for row in rows:
        yield writer.writerow([_csv_cell(row[name]) for name in columns])


def _csv_cell(value: Any) -> Any:
    if value is None:
        return ""
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, (list, dict)):
        return json.dumps(value, sort_keys=True)
    if isinstance(value, str) and value.startswith(FORMULA_STARTS):
        return "'" + value
    return value


def json_lines(rows: Iterator[dict[str, Any]]) -> Lines:
    for row in rows:
        yield json.dumps(row, default=_json_default, ensure_ascii=False) + "\n"


def _json_default(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    raise TypeError(f"cannot export {type(value).__name__} as JSON")


def streaming_response(
    rows: Iterator[dict[str, Any]], columns: tuple[str, ...], fmt: str, name: str
) -> StreamingHttpResponse:
    """`fmt` is one of FORMATS. The lines are produced in the database's thread a batch at a time
    and sent from the event loop: under ASGI, Django would first collect a synchronous iterator
    into a list, which is the very thing streaming is meant to avoid."""
    content_type, extension = FORMATS[fmt]
    lines = csv_lines(rows, columns) if fmt == "csv" else json_lines(rows)
    response = StreamingHttpResponse(batched(lines), content_type=content_type)
    stamp = timezone.now().strftime("%Y%m%d-%H%M%S")
    response["Content-Disposition"] = f'attachment; filename="{name}-{stamp}.{extension}"'
    return response
