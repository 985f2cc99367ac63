"""Requests per API token (and per signed-in user) in a fixed window, counted in Redis so that
every web process shares the count. A long poll or an event stream is one request.

AGENTHUB_API_RATE_LIMIT is "<requests>/<seconds>", e.g. "600/60"; "0/60" turns it off."""

from __future__ import annotations

import functools
import logging
import math
import time

import redis
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

from jobs.errors import ServiceError

log = logging.getLogger(__name__)

DEFAULT = "600/60"


class RateLimited(ServiceError):
    status, error = 429, "rate_limited"

    def __init__(self, detail: str, *, retry_after: int) -> None:
        super().__init__(detail)
        self.retry_after = retry_after


def limit() -> tuple[int, int]:
    """(requests, seconds) from the setting; read on each call so tests can override it."""
    value = getattr(settings, "AGENTHUB_API_RATE_LIMIT", DEFAULT)
    requests, _, seconds = str(value).partition("/")
    if not (requests.strip().isdigit() and seconds.strip().isdigit() and int(seconds) > 0):
        raise ImproperlyConfigured(
            f"AGENTHUB_API_RATE_LIMIT must be <requests>/<seconds>, e.g. {DEFAULT}, not {value!r}."
        )
    return int(requests), int(seconds)


def check(who: str) -> None:
    """Count one request of `who` ("token:<hash>" or "user:<id>"); RateLimited past the limit.

    Redis being unreachable lets the request through: the limit protects the service, it is not
    what keeps data safe."""
    allowed, window = limit()
    if not allowed:
        return
    now = time.time()
    slot = int(now // window)
    key = f"agenthub:ratelimit:{who}:{slot}"
    try:
        pipe = _redis(settings.REDIS_URL).pipeline()
        pipe.incr(key)
        pipe.expire(key, window)
        count, _ = pipe.execute()
    except redis.RedisError:
        log.warning("rate limit not checked: Redis is unreachable", exc_info=True)
        return
    if count > allowed:
        retry = max(1, math.ceil((slot + 1) * window - now))
        raise RateLimited(
            f"More than {allowed} requests in {window} s; try again in {retry} s.",
            retry_after=retry,
        )


@functools.cache
def _redis(url: str) -> redis.Redis:
    return redis.Redis.from_url(url)
