"""The job history and the audit trail in the admin: read-only for everyone, superusers included,
and exportable. Only jobs.services writes these rows; here staff look, search and export.

An admin answers "who approved the change that touched file X last week, what was the prompt,
and what did the agent run?" with the job list's touched-file and date filters, then the job's
page: its prompt, its attempts' reproducibility cards and its reviews.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlencode

from django.contrib import admin
from django.contrib.admin.options import IncorrectLookupParameters
from django.core.exceptions import PermissionDenied
from django.db.models import Count, QuerySet
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseBadRequest
from django.http.response import HttpResponseBase
from django.urls import URLPattern, path, reverse
from django.utils.html import format_html
from django.utils.safestring import SafeString

from jobs import export
from jobs.admin.filters import DateRangeFilter, ReviewerFilter, TouchedFileFilter
from jobs.models import Attempt, AuditEntry, Event, Job, Review

# The card's keys in reading order (jobs/runner.py writes them); any others follow, sorted.
CARD_ORDER = (
    "backend",
    "image",
    "image_id",
    "image_digest",
    "pinned_image",
    "command",
    "limits",
    "egress",
    "network",
    "agent",
    "agent_version",
    "base_commit",
    "start_commit",
    "worker",
    "uid",
)


class ReadOnlyAdmin(admin.ModelAdmin):
    """Staff may look; nobody adds, changes or deletes here, superusers included. The change view
    shows the object read-only and refuses a POST (403); the delete view always answers 403."""

    actions = None

    def has_view_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return request.user.is_active and request.user.is_staff

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


class ExportAdmin(ReadOnlyAdmin):
    """Adds "Export CSV" / "Export JSON lines" to the changelist: exactly the rows its current
    filters, search and date range select, all pages, streamed."""

    change_list_template = "admin/agenthub/change_list_export.html"
    export_name = ""
    export_columns: tuple[str, ...] = ()

    def export_rows(self, queryset: QuerySet[Any], entry: AuditEntry) -> Iterator[dict[str, Any]]:
        """The rows of `queryset`; `entry` is the export's own audit entry."""
        raise NotImplementedError

    def get_urls(self) -> list[URLPattern]:
        name = f"{self.opts.app_label}_{self.opts.model_name}_export"
        view = self.admin_site.admin_view(self.export_view)
        return [path("export.<str:fmt>", view, name=name), *super().get_urls()]

    def export_view(self, request: HttpRequest, fmt: str) -> HttpResponseBase:
        if fmt not in export.FORMATS:
            raise Http404(f"No export format {fmt!r}: choose one of {', '.join(export.FORMATS)}.")
        if not self.has_view_permission(request):
            raise PermissionDenied
        try:
            changelist = self.get_changelist_instance(request)
        except IncorrectLookupParameters as exc:
            return HttpResponseBadRequest(f"Cannot export with these filters: {exc}")
        entry = export.audited(request.user, self.export_name, fmt, request.GET)
        rows = self.export_rows(changelist.queryset, entry)
        return export.streaming_response(rows, self.export_columns, fmt, self.export_name)

    def changelist_view(
        self, request: HttpRequest, extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        name = f"admin:{self.opts.app_label}_{self.opts.model_name}_export"
        query = f"?{request.GET.urlencode()}" if request.GET else ""
        links = [
            (label, reverse(name, args=[fmt]) + query)
            for label, fmt in (("Export CSV", "csv"), ("Export JSON lines", "jsonl"))
        ]
        return super().changelist_view(request, {"export_links": links, **(extra_context or {})})


def _pre(value: str) -> SafeString:
    return format_html('<pre class="ah-pre">{}</pre>', value)


def _pretty_json(value: Any) -> SafeString:
    return _pre(json.dumps(value, indent=2, sort_keys=True, ensure_ascii=False))


def events_url(**lookup: Any) -> str:
    return f"{reverse('admin:jobs_event_changelist')}?{urlencode(lookup)}"


def card_rows(card: dict[str, Any]) -> list[dict[str, Any]]:
    """The reproducibility card as (label, text) rows; multi-line text is shown as a block."""
    keys = [k for k in CARD_ORDER if k in card] + sorted(set(card) - set(CARD_ORDER))
    rows = []
    for key in keys:
        value = card[key]
        if isinstance(value, dict):
            text = ", ".join(f"{k} {v}" for k, v in value.items())
        elif isinstance(value, bool):
            text = "allowed" if key == "network" and value else "yes" if value else "no"
        else:
            text = str(value)
        rows.append({"label": key.replace("_", " "), "text": text, "block": "\n" in text})
    return rows


@admin.register(Job)
class JobAdmin(ExportAdmin):
    list_display = (
        "public_id",
        "title",
        "team",
        "repository",
        "agent",
        "status",
        "submitter",
        "created_at",
    )
    list_display_links = ("public_id", "title")
    list_filter = (
        "team",
        "repository",
        "agent",
        "status",
        ("submitter", admin.RelatedOnlyFieldListFilter),
        ReviewerFilter,
        ("created_at", DateRangeFilter),
        TouchedFileFilter,
    )
    list_select_related = ("team", "repository", "agent", "submitter")
    search_fields = ("public_id", "title", "prompt")
    search_help_text = "Public ID, title or prompt. Use the touched-file filter for paths."
    ordering = ("-created_at", "-pk")
    readonly_fields = ("public_id", "prompt_text", "conflict_list")
    fieldsets = (
        (
            None,
            {
                "fields": (
                    "public_id",
                    "title",
                    "status",
                    "team",
                    "repository",
                    "agent",
                    "submitter",
                    "priority",
                    "attempts_requested",
                    "callback_url",
                )
            },
        ),
        ("Instruction", {"fields": ("prompt_text",)}),
        (
            "Source and result",
            {
                "fields": (
                    "base_ref",
                    "base_commit",
                    "target_branch",
                    "merge_commit",
                    "conflict_list",
                )
            },
        ),
        ("Times", {"fields": ("created_at", "updated_at", "finished_at")}),
    )
    export_name = "jobs"
    export_columns = export.JOB_COLUMNS

    def export_rows(self, queryset: QuerySet[Any], entry: AuditEntry) -> Iterator[dict[str, Any]]:
        return export.job_rows(queryset)

    @admin.display(description="prompt")
    def prompt_text(self, job: Job) -> SafeString:
        return _pre(job.prompt)

    @admin.display(description="conflicts")
    def conflict_list(self, job: Job) -> str:
        return ", ".join(map(str, job.conflicts or [])) or "—"

    def render_change_form(
        self,
        request: HttpRequest,
        context: dict[str, Any],
        add: bool = False,
        change: bool = False,
        form_url: str = "",
        obj: Job | None = None,
    ) -> HttpResponse:
        if obj is not None:
            context.update(job_history(obj))
        return super().render_change_form(request, context, add, change, form_url, obj)


def job_history(job: Job) -> dict[str, Any]:
    """What the job's admin page shows below its fields (templates/admin/jobs/job/)."""
    attempts = job.attempts.annotate(event_count=Count("events")).order_by("number")
    recent = Event.objects.filter(attempt__job=job).select_related("attempt").order_by("-id")
    return {
        "attempts": [
            {
                "attempt": attempt,
                "card": card_rows(attempt.card or {}),
                "files": attempt.files or [],
                "events_url": events_url(attempt__id__exact=attempt.pk),
            }
            for attempt in attempts
        ],
        "reviews": Review.objects.filter(attempt__job=job)
        .select_related("reviewer", "attempt")
        .prefetch_related("line_comments")
        .order_by("created_at", "pk"),
        "audit_entries": job.audit.order_by("seq"),
        "event_count": Event.objects.filter(attempt__job=job).count(),
        "recent_events": list(reversed(recent[:10])),
        "events_url": events_url(attempt__job__public_id=job.public_id),
        "review_url": reverse("job-review", args=[job.public_id]),
        "job_url": reverse("job", args=[job.public_id]),
    }


@admin.register(Attempt)
class AttemptAdmin(ReadOnlyAdmin):
    list_display = (
        "__str__",
        "status",
        "worker",
        "started_at",
        "finished_at",
        "exit_code",
        "partial",
    )
    list_filter = ("status", "partial")
    list_select_related = ("job",)
    search_fields = ("job__public_id", "worker", "branch")
    ordering = ("-pk",)
    readonly_fields = ("events_link", "card_json", "files_json", "patch_text")
    fieldsets = (
        (
            None,
            {
                "fields": (
                    "job",
                    "number",
                    "status",
                    "branch",
                    "retry_of",
                    "worker",
                    "exit_code",
                    "reason",
                    "partial",
                    "events_link",
                )
            },
        ),
        (
            "Times",
            {"fields": ("created_at", "dispatched_at", "started_at", "finished_at")},
        ),
        (
            "Result",
            {
                "fields": (
                    "base_commit",
                    "start_commit",
                    "result_commit",
                    "diff_hash",
                    "files_json",
                    "card_json",
                )
            },
        ),
        ("Patch", {"fields": ("patch_text",), "classes": ("collapse",)}),
    )

    @admin.display(description="events")
    def events_link(self, attempt: Attempt) -> SafeString:
        return format_html(
            '<a href="{}">{} events</a>',
            events_url(attempt__id__exact=attempt.pk),
            attempt.events.count(),
        )

    @admin.display(description="reproducibility card")
    def card_json(self, attempt: Attempt) -> SafeString:
        return _pretty_json(attempt.card)

    @admin.display(description="files")
    def files_json(self, attempt: Attempt) -> SafeString:
        return _pretty_json(attempt.files)

    @admin.display(description="patch")
    def patch_text(self, attempt: Attempt) -> SafeString:
        return _pre(attempt.patch)


@admin.register(Event)
class EventAdmin(ReadOnlyAdmin):
    """Reached from a job's or an attempt's page, filtered by the query string (an attempt has
    up to 100,000s of events; the list never counts the whole table)."""

    list_display = ("seq", "ts", "kind", "stream", "short_text", "attempt")
    list_select_related = ("attempt__job",)
    list_per_page = 200
    show_full_result_count = False
    readonly_fields = ("text_block", "data_json")
    fields = ("attempt", "seq", "ts", "kind", "stream", "text_block", "data_json")
    # Links from the job page filter on the job's public ID; the admin only allows lookups across
    # relations that it lists as filters, and a filter listing every job would not do.
    JOB_LOOKUPS = ("attempt__job__public_id", "attempt__job__public_id__exact")

    def lookup_allowed(self, lookup: str, value: str, request: HttpRequest) -> bool:
        return lookup in self.JOB_LOOKUPS or super().lookup_allowed(lookup, value, request)

    def changelist_view(
        self, request: HttpRequest, extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        job = request.GET.get("attempt__job__public_id")
        attempt = request.GET.get("attempt__id__exact")
        title = (
            f"Events of job {job}" if job else f"Events of attempt #{attempt}" if attempt else None
        )
        context = {**(extra_context or {}), **({"title": title} if title else {})}
        return super().changelist_view(request, context)

    @admin.display(description="text")
    def short_text(self, event: Event) -> str:
        return event.text if len(event.text) <= 120 else event.text[:119] + "…"

    @admin.display(description="text")
    def text_block(self, event: Event) -> SafeString:
        return _pre(event.text)

    @admin.display(description="data")
    def data_json(self, event: Event) -> SafeString:
        return _pretty_json(event.data)


@admin.register(Review)
class ReviewAdmin(ReadOnlyAdmin):
    list_display = ("attempt", "reviewer", "decision", "short_hash", "created_at")
    list_filter = ("decision", ("reviewer", admin.RelatedOnlyFieldListFilter))
    list_select_related = ("attempt__job", "reviewer")
    search_fields = ("attempt__job__public_id", "reviewer__username", "comment")
    ordering = ("-created_at", "-pk")
    readonly_fields = ("comment_text", "line_comment_list")
    fields = (
        "attempt",
        "reviewer",
        "decision",
        "comment_text",
        "line_comment_list",
        "diff_hash",
        "created_at",
    )

    @admin.display(description="diff hash")
    def short_hash(self, review: Review) -> str:
        return review.diff_hash[:12]

    @admin.display(description="comment")
    def comment_text(self, review: Review) -> SafeString:
        return _pre(review.comment)

    @admin.display(description="line comments")
    def line_comment_list(self, review: Review) -> SafeString:
        return _pre("\n".join(f"{c.where}: {c.body}" for c in review.line_comments.all()))


@admin.register(AuditEntry)
class AuditEntryAdmin(ExportAdmin):
    list_display = (
        "seq",
        "ts",
        "actor_name",
        "action",
        "team",
        "job",
        "target",
        "before",
        "after",
    )
    list_display_links = ("seq", "ts")
    list_filter = ("action", "team", ("ts", DateRangeFilter))
    list_select_related = ("team", "job")
    search_fields = ("actor_name", "action", "target", "job__public_id")
    search_help_text = "Actor, action, target or job public ID."
    show_full_result_count = False
    readonly_fields = ("data_json",)
    fields = (
        "seq",
        "ts",
        "actor",
        "actor_name",
        "action",
        "team",
        "job",
        "target",
        "before",
        "after",
        "data_json",
        "prev_hash",
        "hash",
    )
    export_name = "audit"
    export_columns = export.AUDIT_COLUMNS

    def export_rows(self, queryset: QuerySet[Any], entry: AuditEntry) -> Iterator[dict[str, Any]]:
        # The rows are read after the export's own entry was written; it records the export and
        # is never one of its rows, whatever the filters (the next export has it).
        return export.audit_rows(queryset.exclude(pk=entry.pk))

    @admin.display(description="data")
    def data_json(self, entry: AuditEntry) -> SafeString:
        return _pretty_json(entry.data)
