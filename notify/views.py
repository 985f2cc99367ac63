"""The notification settings page, the browser's push subscription endpoints and the service
worker script. Glue only: the rules live in notify.services and notify.webpush."""

from __future__ import annotations

import json
from collections.abc import Callable
from functools import wraps
from typing import Any

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.contrib.staticfiles import finders
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_GET, require_http_methods

from jobs.api import error_response
from jobs.errors import BadInput, NotFound, ServiceError, Unauthorized
from notify import services, webpush
from notify.forms import PreferenceForm
from notify.models import NotificationPreference

JsonView = Callable[..., HttpResponse]


@login_required
@require_http_methods(["GET", "POST"])
def preferences(request: HttpRequest) -> HttpResponse:
    data = request.POST if request.method == "POST" else None
    form = PreferenceForm(data, instance=NotificationPreference.of(request.user))
    if request.method == "POST" and form.is_valid():
        form.save()
        messages.success(request, "Notification settings saved.")
        return redirect("notify-settings")
    return render(request, "notify/settings.html", {"form": form})


def json_view(view: JsonView) -> JsonView:
    """Signed-in users only, answered in JSON: push.js reads {error, detail, field}, not a
    redirect to the sign-in page. CSRF stays on (the middleware checks it before this)."""

    @wraps(view)
    def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        try:
            if not request.user.is_authenticated:
                raise Unauthorized("Sign in to manage browser notifications.")
            return view(request, *args, **kwargs)
        except ServiceError as exc:
            return error_response(exc)

    return wrapper


@require_http_methods(["POST", "DELETE"])
@json_view
def subscriptions(request: HttpRequest) -> HttpResponse:
    data = _body(request)
    if request.method == "DELETE":
        if not services.unsubscribe(request.user, data.get("endpoint")):
            raise NotFound("This browser has no subscription of yours to remove.")
        return HttpResponse(status=204)
    subscription, created = services.subscribe(
        request.user, data, request.headers.get("User-Agent", "")
    )
    return JsonResponse(
        {"id": subscription.pk, "endpoint": subscription.endpoint, "created": created},
        status=201 if created else 200,
    )


@require_GET
@json_view
def vapid_public_key(request: HttpRequest) -> HttpResponse:
    return JsonResponse({"public_key": webpush.vapid_keys().public_key})


@require_GET
def service_worker(request: HttpRequest) -> HttpResponse:
    """static/agenthub/sw.js served from the root: a worker's scope cannot reach above the
    path it was served from, and it must see every page to focus one on a click."""
    path = finders.find("agenthub/sw.js")
    if not isinstance(path, str):
        raise Http404("sw.js is missing from the static files.")
    with open(path, "rb") as file:
        response = HttpResponse(file.read(), content_type="text/javascript; charset=utf-8")
    response["Service-Worker-Allowed"] = "/"
    # Browsers check for a new worker on navigation; let them see a deploy at once.
    response["Cache-Control"] = "no-cache"
    return response


def _body(request: HttpRequest) -> dict[str, Any]:
    try:
        data = json.loads(request.body or b"{}")
    except (ValueError, UnicodeDecodeError) as exc:
        raise BadInput(f"The body is not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise BadInput("The body must be a JSON object.")
    return data
