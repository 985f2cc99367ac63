"""The reviewer's queue: the header's "N waiting for your review" (a context processor, and the
fragment app.js fetches again when a job enters or leaves review). The dashboard's filter of the
same name is jobs.views' `review`; both count through jobs.access.awaiting_review."""

from __future__ import annotations

from typing import Any

from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.utils.functional import SimpleLazyObject

from jobs import access


def waiting(request: HttpRequest) -> dict[str, Any]:
    """Context processor: how many jobs wait for this user's review. Lazy: a page that does not
    show it costs no query."""
    return {"review_waiting": SimpleLazyObject(lambda: _count(request))}


def _count(request: HttpRequest) -> int:
    user = getattr(request, "user", None)
    if user is None or not user.is_authenticated:
        return 0
    return access.awaiting_review(user).count()


@login_required
def badge(request: HttpRequest) -> HttpResponse:
    return render(request, "jobs/_review_badge.html", {"review_waiting": _count(request)})
