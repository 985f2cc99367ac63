"""Pages: the dashboard, a job's live log, and its review. Only glue: lookups through
jobs.access, changes through jobs.services, live updates through jobs.consumers."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from itertools import zip_longest
from typing import Any

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.paginator import Paginator
from django.db.models import QuerySet
from django.http import Http404, HttpRequest, HttpResponse, QueryDict, StreamingHttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_POST
from django_htmx.http import trigger_client_event
from django_htmx.middleware import HtmxDetails

from gateway.ledger import usage_of
from jobs import access, services
from jobs.errors import Conflict, ServiceError
from jobs.forms import ReviewForm, SubmitForm
from jobs.models import Attempt, Job, JobStatus, LineComment, Role
from jobs.streaming import Lines, batched

FILTERS = ("status", "repo", "agent", "mine", "review")
JOBS_PER_PAGE = 50
PAGE_DIFF_LINES = 3000


class HtmxHttpRequest(HttpRequest):
    htmx: HtmxDetails


def _job(request: HtmxHttpRequest, public_id: str) -> Job:
    try:
        return access.get_job(request.user, public_id)
    except ServiceError:
        raise Http404 from None


@login_required
def dashboard(request: HtmxHttpRequest) -> HttpResponse:
    shown = Paginator(_filtered(request, access.visible_jobs(request.user)), JOBS_PER_PAGE)
    page = shown.get_page(request.GET.get("page"))
    filters = _filter_context(request)
    context = {
        "jobs": page,
        "page": page,
        "filters": filters,
        "filtered": any(filters["values"].values()),
        "query": _query_without_page(request),
        "statuses": JobStatus.choices,
    }
    if request.htmx and request.htmx.target == "job-list":
        return render(request, "jobs/_job_list.html", context)
    return render(
        request, "jobs/dashboard.html", {**context, "form": SubmitForm(user=request.user)}
    )


def _filtered(request: HtmxHttpRequest, jobs: QuerySet[Job]) -> QuerySet[Job]:
    if status := request.GET.get("status"):
        jobs = jobs.filter(status=status)
    if repo := request.GET.get("repo"):
        jobs = jobs.filter(repository__name=repo.rpartition("/")[2])
    if agent := request.GET.get("agent"):
        jobs = jobs.filter(agent__name=agent)
    if request.GET.get("mine"):
        jobs = jobs.filter(submitter_id=request.user.pk)
    if request.GET.get("review"):
        jobs = jobs.filter(pk__in=access.awaiting_review(request.user).values("pk"))
    return jobs.order_by("-created_at", "-pk")


def _query_without_page(request: HtmxHttpRequest) -> str:
    """The filters of this request as a query string, for the pages' links."""
    query = request.GET.copy()
    query.pop("page", None)
    return query.urlencode()


def _filter_context(request: HtmxHttpRequest) -> dict[str, Any]:
    form = SubmitForm(user=request.user)
    return {
        "values": {name: request.GET.get(name, "") for name in FILTERS},
        "repos": [value for value, _ in form.fields["repo"].choices],  # type: ignore[attr-defined]
        "agents": [value for value, _ in form.fields["agent"].choices],  # type: ignore[attr-defined]
    }


@login_required
@require_POST
def submit(request: HtmxHttpRequest) -> HttpResponse:
    form = SubmitForm(request.POST, user=request.user)
    job = None
    if form.is_valid():
        try:
            job = services.submit_job(request.user, **form.cleaned_data)
        except ServiceError as exc:
            form.add_error(exc.field if exc.field in form.fields else None, exc.detail)
    if not request.htmx:
        if job is None:
            return render(request, "jobs/dashboard.html", {"form": form})
        messages.success(request, f"Job {job.public_id} queued: {job.title}")
        return redirect("dashboard")
    if job is None:
        return render(request, "jobs/_submit_form.html", {"form": form})
    # The form comes back empty, and the new card lands on top of the list (out of band).
    fresh = SubmitForm(
        user=request.user,
        initial={"repo": form.cleaned_data["repo"], "agent": form.cleaned_data["agent"]},
    )
    response = render(request, "jobs/_submit_response.html", {"form": fresh, "job": job})
    return trigger_client_event(response, "job-submitted", {"id": job.public_id})


@login_required
def job_page(request: HtmxHttpRequest, public_id: str) -> HttpResponse:
    job = _job(request, public_id)
    attempts = list(job.attempts.order_by("number"))
    attempt = _chosen_attempt(request, attempts)
    return render(
        request,
        "jobs/job.html",
        {
            "attempts": attempts,
            "usage": _usage(job, attempt),
            **_actions(request, job, attempt),
        },
    )


@login_required
def job_actions(request: HtmxHttpRequest, public_id: str) -> HttpResponse:
    """The job page's controls as the job's state now allows them (fetched on job-changed)."""
    job = _job(request, public_id)
    attempt = _chosen_attempt(request, list(job.attempts.order_by("number")))
    return render(request, "jobs/_job_actions.html", _actions(request, job, attempt))


def _actions(request: HtmxHttpRequest, job: Job, attempt: Attempt | None) -> dict[str, Any]:
    """What the job's controls need: cancel while it waits or runs (its submitter or a
    reviewer), re-run once it has ended short of a merge, and the review page once there is a
    result to decide on, or decisions to read."""
    unsettled = job.status in (JobStatus.QUEUED, JobStatus.RUNNING)
    return {
        "job": job,
        "attempt": attempt,
        "can_cancel": unsettled and access.can_cancel(request.user, job),
        "can_rerun": not unsettled and job.status != JobStatus.MERGED,
        "review_link": "Review"
        if job.status in REVIEWABLE
        else "Reviews"
        if job.status in (JobStatus.MERGED, JobStatus.REJECTED)
        else "",
    }


def _usage(job: Job, attempt: Attempt | None) -> dict[str, Any] | None:
    """What an AI agent's attempt used, as the gateway counted it."""
    if attempt is None or not job.agent.provider:
        return None
    return usage_of([attempt.pk])[attempt.pk]


def _chosen_attempt(request: HtmxHttpRequest, attempts: list[Attempt]) -> Attempt | None:
    wanted = request.GET.get("attempt", "")
    chosen = [a for a in attempts if str(a.number) == wanted]
    return chosen[0] if chosen else (attempts[-1] if attempts else None)


@login_required
def job_log(request: HtmxHttpRequest, public_id: str) -> StreamingHttpResponse:
    """The whole log of an attempt as plain text, streamed (the page shows only the tail)."""
    job = _job(request, public_id)
    attempt = _chosen_attempt(request, list(job.attempts.order_by("number")))
    if attempt is None:
        raise Http404

    def lines() -> Lines:
        for event in attempt.events.order_by("seq").iterator(chunk_size=2000):
            yield f"{event.ts:%H:%M:%S} [{event.stream or event.kind}] {event.text}\n"

    response = StreamingHttpResponse(batched(lines()), content_type="text/plain; charset=utf-8")
    response["Content-Disposition"] = f'inline; filename="{job.public_id}-{attempt.number}.log"'
    return response


@login_required
def review_page(request: HtmxHttpRequest, public_id: str) -> HttpResponse:
    return _review_page_response(request, _job(request, public_id))


def _review_page_response(request: HtmxHttpRequest, job: Job, **extra: Any) -> HttpResponse:
    from jobs import diffview

    context = _review_context(request, job)
    attempt = context["attempt"]
    files = diffview.parse_patch(attempt.patch, attempt.files) if attempt else []
    _collapse_beyond(files, PAGE_DIFF_LINES)
    context.update(
        {
            "files": files,
            # Shown under their lines: only this attempt's, as other results number lines
            # differently (History in the panel lists every attempt's).
            "line_comments": LineComment.objects.filter(review__attempt=attempt)
            .select_related("review__reviewer")
            .order_by("review__created_at", "id")
            if attempt
            else [],
            "tree": diffview.file_tree(files),
            "diff_file_url": reverse("job-diff-file", args=[job.public_id])
            + (f"?attempt={attempt.number}&" if attempt else "?"),
            **extra,
        }
    )
    return render(request, "jobs/review.html", context)


def _collapse_beyond(files: list[Any], budget: int) -> None:
    """Keep big reviews fast: once the page holds `budget` lines, later files load on demand."""
    for file in files:
        if budget <= 0:
            file.large = True
        elif not file.large:
            budget -= file.line_count


REVIEWABLE = (JobStatus.NEEDS_REVIEW, JobStatus.APPROVED, JobStatus.CONFLICT)


def _review_context(request: HtmxHttpRequest, job: Job) -> dict[str, Any]:
    attempts = list(job.attempts.order_by("number"))
    reviewable = [a for a in attempts if a.status == "succeeded" and a.result_commit]
    wanted = request.GET.get("attempt", "")
    chosen = [a for a in attempts if str(a.number) == wanted]
    attempt = (
        chosen[0]
        if chosen
        else (reviewable[-1] if reviewable else (attempts[-1] if attempts else None))
    )
    member = access.membership(request.user, job.team_id)
    return {
        "job": job,
        "attempts": attempts,
        "attempt": attempt,
        "usage": _usage(job, attempt),
        "reviews": job.reviews_qs().order_by("created_at").prefetch_related("line_comments"),
        "approvals": services.approvals(attempt) if attempt and attempt.diff_hash else 0,
        "why_not_review": _why_not_review(request.user, job, member, attempt),
        "why_not_approve": _why_not_approve(request.user, job, attempt),
        # The form only while a decision can still be taken; after that, the reason alone.
        "reviewable": job.status in REVIEWABLE,
        "can_merge": member is not None and member.can_review and job.status == JobStatus.APPROVED,
        "can_rerun": job.status not in (JobStatus.QUEUED, JobStatus.RUNNING, JobStatus.MERGED),
        # The audit entry of a merge the agent's review policy made without review.
        "silent_merge": job.audit.filter(action="job.merge", data__silent=True).first()
        if job.status == JobStatus.MERGED
        else None,
        "form": ReviewForm(initial={"attempt": attempt.number if attempt else None}),
        # What the reviewer typed, given back when their decision was refused (review_action).
        "typed_comment": "",
        "pending_comments": [],
    }


def _why_not_review(user: Any, job: Job, member: Any, attempt: Attempt | None) -> str:
    """Why the review buttons are disabled for this user, or '' when they are not."""
    if job.submitter_id == user.pk:
        return "You submitted this job; someone else has to review it."
    if member is None or member.role not in (Role.REVIEWER, Role.ADMIN):
        return "Only reviewers of the team can review."
    if job.status not in REVIEWABLE:
        return f"Nothing to review: the job is {job.get_status_display().lower()}."
    if attempt is None or not attempt.result_commit:
        return "This attempt has no result to review."
    return ""


def _why_not_approve(user: Any, job: Job, attempt: Attempt | None) -> str:
    """Why Approve is disabled beyond why_not_review: a merge conflict is for a change or a
    re-run, and an approval counts once."""
    if job.status == JobStatus.CONFLICT:
        return "The result conflicts with its target branch: request changes, re-run or reject."
    if attempt is not None and attempt.diff_hash and services.has_approved(user, attempt):
        return f"You approved attempt {attempt.number} already."
    return ""


@login_required
def review_panel(request: HtmxHttpRequest, public_id: str) -> HttpResponse:
    job = _job(request, public_id)
    return render(request, "jobs/_review_panel.html", _review_context(request, job))


@login_required
@require_POST
def review_action(request: HtmxHttpRequest, public_id: str) -> HttpResponse:
    """A decision from the review panel's form, with its overall comment and its line comments.

    Line comments come as four repeated fields, one value per comment in each and in the same
    order: comment_path, comment_line, comment_side (new|old) and comment_body (review.js
    writes them into the form). services.review_job checks them; when it refuses the decision,
    the panel comes back with the error and with everything typed, line comments as pending.
    A decision taken triggers "review-decided" ({decision}) in the browser.
    """
    job = _job(request, public_id)
    form = ReviewForm(request.POST)
    line_comments = _posted_line_comments(request.POST)
    error = ""
    if form.is_valid() and form.cleaned_data["decision"] == "reject" and not _said(form):
        error = "Say why you reject it in the comment: a reject ends the job, and it tells why."
    elif form.is_valid():
        try:
            services.review_job(
                request.user,
                job,
                form.cleaned_data["decision"],
                comment=form.cleaned_data["comment"],
                attempt=form.cleaned_data["attempt"],
                line_comments=line_comments,
            )
        except ServiceError as exc:
            error = exc.detail
    else:
        error = "Choose approve, reject or request changes."
    if error:
        kept = {"typed_comment": request.POST.get("comment", ""), "pending_comments": line_comments}
        return _panel_response(request, job, error, **kept)
    response = _panel_response(request, job, error)
    # review.js turns the pending comments into given ones on this (not on the swap, which a
    # refresh of the panel may have overtaken).
    return trigger_client_event(
        response, "review-decided", {"decision": form.cleaned_data["decision"]}
    )


def _said(form: ReviewForm) -> bool:
    return bool(form.cleaned_data["comment"].strip())


def _posted_line_comments(post: QueryDict) -> list[dict[str, Any]]:
    """The form's line comments as services.review_job takes them. A line that is not a number
    is passed on as typed, so the service's error names it; missing values are empty."""
    fields = [post.getlist(f"comment_{name}") for name in ("path", "line", "side", "body")]
    return [
        {
            "path": path,
            "line": int(line) if line.isascii() and line.isdigit() else line,
            "side": side,
            "body": body,
        }
        for path, line, side, body in zip_longest(*fields, fillvalue="")
    ]


@login_required
@require_POST
def merge_action(request: HtmxHttpRequest, public_id: str) -> HttpResponse:
    job = _job(request, public_id)
    error = ""
    try:
        services.merge_job(request.user, job)
    except Conflict as exc:
        error = exc.detail
    except ServiceError as exc:
        error = exc.detail
    return _panel_response(request, job, error)


def _panel_response(request: HtmxHttpRequest, job: Job, error: str, **typed: Any) -> HttpResponse:
    job.refresh_from_db()
    if not request.htmx:
        # Without JavaScript a refusal shows on the whole page, the typed comment kept.
        if error:
            return _review_page_response(request, job, error=error, **typed)
        return redirect("job-review", public_id=job.public_id)
    return render(
        request,
        "jobs/_review_panel.html",
        {**_review_context(request, job), "error": error, **typed},
    )


@login_required
@require_POST
def cancel_action(request: HtmxHttpRequest, public_id: str) -> HttpResponse:
    return _act(request, public_id, services.cancel_job, "Job {job} is cancelled.")


@login_required
@require_POST
def rerun_action(request: HtmxHttpRequest, public_id: str) -> HttpResponse:
    """Re-run, with the instruction edited first when the form sent one."""
    rerun = partial(services.rerun_job, instruction=request.POST.get("instruction", ""))
    return _act(request, public_id, rerun, "Job {job} is queued again.")


@login_required
@require_POST
def reproduce_action(request: HtmxHttpRequest, public_id: str, number: int) -> HttpResponse:
    """Run the attempt again on what it ran on; the new attempt's log says what could not be
    had (jobs/services/reproduce.py)."""
    job = _job(request, public_id)
    try:
        attempt, _ = services.reproduce_attempt(request.user, job, number)
    except ServiceError:
        return redirect("job", public_id=job.public_id)  # the page shows why it cannot
    return redirect(f"{reverse('job', args=[job.public_id])}?attempt={attempt.number}")


@login_required
@require_POST
def push_action(request: HtmxHttpRequest, public_id: str) -> HttpResponse:
    return _act(request, public_id, services.push_job, "Job {job}'s result is being pushed.")


def _act(
    request: HtmxHttpRequest,
    public_id: str,
    action: Callable[[Any, Job], object],
    done: str,
) -> HttpResponse:
    """Do `action` and go back to the job's page, saying what happened: `done`, or why it
    could not be done (the job moved on since the page was drawn, the user may not)."""
    job = _job(request, public_id)
    try:
        action(request.user, job)
    except ServiceError as exc:
        messages.error(request, exc.detail)
    else:
        messages.success(request, done.format(job=job.public_id))
    return redirect("job", public_id=job.public_id)


@login_required
def diff_file(request: HtmxHttpRequest, public_id: str) -> HttpResponse:
    """One file of a large diff, loaded on demand by the review page."""
    from jobs import diffview

    job = _job(request, public_id)
    attempt = _chosen_attempt(request, list(job.attempts.order_by("number")))
    path = request.GET.get("path", "")
    files = (
        [f for f in diffview.parse_patch(attempt.patch, attempt.files) if f.path == path]
        if attempt
        else []
    )
    if not files:
        raise Http404
    return render(request, "jobs/_diff_file.html", {"file": files[0]})
