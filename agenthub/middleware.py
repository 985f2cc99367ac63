"""The middleware chain: Django's own, made to run in the event loop, a strict
Content-Security-Policy, and JSON for the API's 405s.

The CSP allows scripts only from our own static files, never inline, so even a rendering mistake
cannot run injected markup. Every middleware here works in sync and async chains, so async views
and streams are not pushed through a thread for their sake.

Django's built-in middlewares, in an async chain (under uvicorn or daphne), run each of their
hooks through `sync_to_async`: about a dozen trips to a thread and back per request, ~2 ms of a
request that costs ~8. Their hooks do no I/O (they set lazy attributes, read cookies and
headers, and add headers), except where a session or messages have to be saved: those, and
only those, still go to a thread (`needs_thread`)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from asgiref.sync import iscoroutinefunction, markcoroutinefunction, sync_to_async
from django.conf import settings
from django.contrib.auth import middleware as auth
from django.contrib.messages import middleware as messages
from django.contrib.sessions import middleware as sessions
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.middleware import clickjacking, common, csrf, security
from django.utils.deprecation import MiddlewareMixin

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


class _InLoop(MiddlewareMixin):
    """A built-in middleware whose hooks run in the event loop, unless `needs_thread` says the
    response's hook will do I/O (a database write)."""

    async def __acall__(self, request: HttpRequest) -> HttpResponse:
        response = None
        if hasattr(self, "process_request"):
            response = self.process_request(request)
        response = response or await self.get_response(request)  # type: ignore[misc]
        if hasattr(self, "process_response"):
            if self.needs_thread(request):
                return await sync_to_async(self.process_response, thread_sensitive=True)(
                    request, response
                )
            response = self.process_response(request, response)
        return response

    def needs_thread(self, request: HttpRequest) -> bool:
        return False


class SecurityMiddleware(_InLoop, security.SecurityMiddleware):
    pass


class SessionMiddleware(_InLoop, sessions.SessionMiddleware):
    def needs_thread(self, request: HttpRequest) -> bool:
        session = getattr(request, "session", None)
        return session is not None and (session.modified or settings.SESSION_SAVE_EVERY_REQUEST)


class CommonMiddleware(_InLoop, common.CommonMiddleware):
    pass


class CsrfViewMiddleware(_InLoop, csrf.CsrfViewMiddleware):
    """Its view hook reads the form's token from the body, which the ASGI server has already
    received whole: in an async chain it is a coroutine, so Django calls it in the loop."""

    def __init__(self, get_response: Callable[[HttpRequest], Any]) -> None:
        super().__init__(get_response)
        if self.async_mode:
            check = super().process_view

            async def process_view(request: HttpRequest, *args: Any) -> HttpResponse | None:
                return check(request, *args)

            self.process_view = process_view  # type: ignore[method-assign,assignment]


class AuthenticationMiddleware(_InLoop, auth.AuthenticationMiddleware):
    pass


class MessageMiddleware(_InLoop, messages.MessageMiddleware):
    def needs_thread(self, request: HttpRequest) -> bool:
        # Storing messages may write to the session (and load it first).
        storage = getattr(request, "_messages", None)
        return storage is not None and (storage.used or storage.added_new)


class XFrameOptionsMiddleware(_InLoop, clickjacking.XFrameOptionsMiddleware):
    pass
