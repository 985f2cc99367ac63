"""Pages. The dashboard proper (live job list, job and review pages) builds on these."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from jobs import access


def home(request: HttpRequest) -> HttpResponse:
    jobs = access.visible_jobs(request.user).order_by("-created_at")[:25]
    return render(request, "jobs/home.html", {"jobs": jobs})
