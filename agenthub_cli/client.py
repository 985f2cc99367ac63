"""The AgentHub HTTP API as one user: requests, long polls, event streams, and the errors a
person can act on. Used by the `agenthub` commands and the MCP server alike."""

from __future__ import annotations

import math
import time
import urllib.parse
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from types import TracebackType
from typing import Any

import httpx
from httpx_sse import SSEError, connect_sse

# Job states a wait goes on through (`agenthub wait`, the MCP tool wait_for_job).
UNSETTLED = frozenset({"queued", "running"})
FOLLOW_RETRY_SECONDS = 1.0
# A download streams for as long as it takes; only a silence this long ends it.
DOWNLOAD_TIMEOUT = httpx.Timeout(30.0, read=600.0)
REQUEST_TIMEOUT = 60.0
# The event stream sends a keep-alive comment every 15 s; silence for longer means it is gone.
STREAM_READ_TIMEOUT = 45.0


class CliError(Exception):
    """An expected failure: printed as `agenthub: <message>`, never as a traceback.

    `error` is the short code `--json` prints beside the message."""

    def __init__(self, message: str, code: int = 1, error: str = "error") -> None:
        super().__init__(message)
        self.message = message
        self.code = code
        self.error = error

    def as_json(self) -> dict[str, Any]:
        return {"error": self.error, "detail": self.message}


class ApiError(CliError):
    """The API answered with an error status; `body` is its `{error, detail, field?, ...}`."""

    def __init__(self, status: int, body: dict[str, Any], message: str | None = None) -> None:
        detail = message or str(body.get("detail") or body.get("error") or f"HTTP {status}")
        if body.get("field") and not message:
            detail += f" (field: {body['field']})"
        super().__init__(detail, error=str(body.get("error") or status))
        self.status = status
        self.body = body

    def as_json(self) -> dict[str, Any]:
        return {**super().as_json(), **self.body, "http_status": self.status}


class Client:
    """The HTTP API as the token's user, for the CLI and the MCP server (mcp_server.py).

    Every failure becomes a CliError whose message a person can act on."""

    def __init__(self, url: str, token: str | None) -> None:
        self.url = url
        self.token = token
        headers = {"Accept": "application/json"}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        # httpx follows no redirect unless asked, and error() says where one pointed.
        self.http = httpx.Client(base_url=f"{url}/api/v1", headers=headers, timeout=REQUEST_TIMEOUT)

    def __enter__(self) -> Client:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.http.close()

    def request(
        self,
        method: str,
        path: str,
        *,
        params: dict[str, Any] | None = None,
        body: dict[str, Any] | None = None,
        timeout: float | None = None,
    ) -> httpx.Response:
        try:
            response = self.http.request(
                method,
                path,
                params=_present(params),
                json=None if body is None else _present(body),
                timeout=httpx.USE_CLIENT_DEFAULT if timeout is None else timeout,
            )
        except httpx.TransportError as exc:
            raise self.unreachable(exc) from None
        if not response.is_success:
            raise self.error(response)
        return response

    def download(self, path: str, sink: Callable[[bytes], object]) -> httpx.Headers:
        """GET a file in chunks into `sink` (a large image never sits in memory)."""
        try:
            with self.http.stream("GET", path, timeout=DOWNLOAD_TIMEOUT) as response:
                if not response.is_success:
                    response.read()
                    raise self.error(response)
                for chunk in response.iter_bytes(1024 * 1024):
                    sink(chunk)
                return response.headers
        except httpx.TransportError as exc:
            raise self.unreachable(exc) from None

    def json(self, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
        response = self.request(method, path, **kwargs)
        try:
            data = response.json()
        except ValueError:
            raise self.not_agenthub(response) from None
        if not isinstance(data, dict):
            raise self.not_agenthub(response)
        return data

    def wait(self, public_id: str, seconds: int) -> dict[str, Any]:
        """One long poll: the job once it is settled, or as it is after `seconds`."""
        params = {"timeout": seconds}
        return self.json("GET", job_path(public_id, "wait"), params=params, timeout=seconds + 30)

    def follow(self, public_id: str, attempt: int, after: int) -> Iterator[dict[str, Any]]:
        """An attempt's events after seq `after` as they are written, until the attempt ends.

        Server-Sent Events; a dropped connection resumes after the last seq seen, so nothing is
        missed and nothing comes twice."""
        params = {"attempt": attempt}
        timeout = httpx.Timeout(REQUEST_TIMEOUT, read=STREAM_READ_TIMEOUT)
        while True:
            try:
                headers = {"Last-Event-ID": str(after)}
                with connect_sse(
                    self.http,
                    "GET",
                    job_path(public_id, "events"),
                    params={**params, "after": after},
                    headers=headers,
                    timeout=timeout,
                ) as source:
                    if not source.response.is_success:
                        raise self.error(source.response)
                    for sse in source.iter_sse():
                        if sse.event == "end":
                            return
                        if sse.event == "error":  # the token was revoked, the job is gone…
                            problem = sse.json()
                            raise CliError(
                                str(problem.get("detail", "the server ended the stream")),
                                error=str(problem.get("error", "error")),
                            )
                        event = sse.json()
                        if event["seq"] > after:
                            after = event["seq"]
                            yield event
            except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
                raise self.unreachable(exc) from None
            except (httpx.TransportError, ValueError):
                pass  # cut off mid-stream (or a torn line): resume below
            except SSEError:
                raise CliError(f"{self.url} does not stream events; is it AgentHub?") from None
            time.sleep(FOLLOW_RETRY_SECONDS)

    def unreachable(self, exc: Exception) -> CliError:
        reason = str(exc) or type(exc).__name__
        return CliError(f"cannot reach AgentHub at {self.url}: {reason}", 3, "unreachable")

    def not_agenthub(self, response: httpx.Response) -> CliError:
        return CliError(
            f"{self.url} answered HTTP {response.status_code} {response.reason_phrase}, not as"
            " the AgentHub API does; check the URL (AGENTHUB_URL or `agenthub login`).",
            error="not_agenthub",
        )

    def error(self, response: httpx.Response) -> CliError:
        if response.is_redirect:
            # Following it would re-send the token; name the server it points at instead.
            where = response.headers.get("Location", "elsewhere").split("/api/v1", 1)[0]
            return CliError(
                f"{self.url} redirects to {where}; use that as the server URL.", error="redirect"
            )
        response.read()
        try:
            body = response.json()
        except ValueError:
            body = None
        if not isinstance(body, dict) or not ("detail" in body or "error" in body):
            return self.not_agenthub(response)
        if response.status_code == 401:
            how = "set AGENTHUB_TOKEN" if self.token else "set AGENTHUB_TOKEN or pass --token"
            hint = f" Run `agenthub login` or {how} to use a valid API token."
            return ApiError(401, body, str(body.get("detail") or "Unauthorized.") + hint)
        if response.status_code == 429:
            return ApiError(429, body, rate_limited(body, response.headers.get("Retry-After")))
        return ApiError(response.status_code, body)


def rate_limited(body: dict[str, Any], retry_after: str | None) -> str:
    detail = str(body.get("detail") or "Too many requests.")
    seconds = retry_seconds(retry_after)
    if seconds is None:
        return f"rate limited by AgentHub: {detail} Try again later."
    return f"rate limited by AgentHub: {detail} Retry in {seconds} s."


def retry_seconds(value: str | None) -> int | None:
    """Retry-After as seconds from now; the header is a number of seconds or an HTTP date."""
    if not value:
        return None
    if value.strip().isdigit():
        return int(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0, math.ceil((when - datetime.now(UTC)).total_seconds()))


def _present(values: dict[str, Any] | None) -> dict[str, Any] | None:
    return None if values is None else {k: v for k, v in values.items() if v is not None}


def job_path(public_id: str, action: str = "") -> str:
    return f"/jobs/{urllib.parse.quote(public_id, safe='')}" + (f"/{action}" if action else "")
