"""A strict Content-Security-Policy, and JSON for the API's 405s.

The CSP allows scripts only from our own static files, never inline, so even a rendering mistake
cannot run injected markup. Both middlewares work in sync and async chains, so async views and
streams under daphne are not pushed through a thread for their sake."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from asgiref.sync import iscoroutinefunction, markcoroutinefunction
from django.http import HttpRequest, HttpResponse, JsonResponse

POLICY = "; ".join(
    [
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' data:",
        "connect-src 'self'",
        "worker-src 'self'",
        "object-src 'none'",
        "base-uri 'none'",
        "frame-ancestors 'none'",
        "form-action 'self'",
    ]
)


class _Middleware:
    """Calls `process(request, response)` after the view, in a sync or an async chain."""

    sync_capable = True
    async_capable = True

    def __init__(self, get_response: Callable[[HttpRequest], Any]) -> None:
        self.get_response = get_response
        self.is_async = iscoroutinefunction(get_response)
        if self.is_async:
            markcoroutinefunction(self)

    def __call__(self, request: HttpRequest) -> HttpResponse | Awaitable[HttpResponse]:
        if self.is_async:
            return self._acall(request)
        return self.process(request, self.get_response(request))

    async def _acall(self, request: HttpRequest) -> HttpResponse:
        return self.process(request, await self.get_response(request))

    def process(self, request: HttpRequest, response: HttpResponse) -> HttpResponse:
        raise NotImplementedError


class ContentSecurityPolicyMiddleware(_Middleware):
    def process(self, request: HttpRequest, response: HttpResponse) -> HttpResponse:
        response.setdefault("Content-Security-Policy", POLICY)
        return response


class JsonMethodNotAllowedMiddleware(_Middleware):
    """django-ninja answers a wrong method with Django's plain 405; the API's errors are JSON."""

    def process(self, request: HttpRequest, response: HttpResponse) -> HttpResponse:
        if (
            response.status_code == 405
            and request.path.startswith("/api/")
            and not response.get("Content-Type", "").startswith("application/json")
        ):
            allowed = response.get("Allow", "")
            json = JsonResponse(
                {"error": "method_not_allowed", "detail": f"Use {allowed or 'another method'}."},
                status=405,
            )
            json["Allow"] = allowed
            return json
        return response
