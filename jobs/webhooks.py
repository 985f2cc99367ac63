"""Job callbacks: a signed POST to the job's callback_url whenever it settles.

The body is JSON; `X-AgentHub-Signature: sha256=<hex>` is the HMAC-SHA256 of the exact body with
AGENTHUB_WEBHOOK_SECRET, so the receiver can check it came from us. Failed deliveries are retried
by RQ with backoff (see services._announce).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import urllib.request
from typing import Any

from django.conf import settings

from jobs.models import Job
from jobs.serialize import job_summary

TIMEOUT_SECONDS = 10
RETRY_INTERVALS = [5, 30, 120, 600, 1800]


def signature(body: bytes) -> str:
    secret = settings.AGENTHUB_WEBHOOK_SECRET.encode()
    return "sha256=" + hmac.new(secret, body, hashlib.sha256).hexdigest()


def payload(job: Job) -> dict[str, Any]:
    return {"event": "job.status", "job": job_summary(job)}


def deliver(job_id: int, status: str) -> int:
    """POST the job as it is now; raises on a network error or a non-2xx answer (RQ retries)."""
    job = Job.objects.select_related("team", "repository", "agent", "submitter").get(pk=job_id)
    body = json.dumps({**payload(job), "status": status}).encode()
    request = urllib.request.Request(  # noqa: S310 - the URL was validated as http(s) on submit
        job.callback_url,
        data=body,
        method="POST",
        headers={
            "Content-Type": "application/json",
            "User-Agent": "AgentHub",
            "X-AgentHub-Event": "job.status",
            "X-AgentHub-Signature": signature(body),
        },
    )
    with urllib.request.urlopen(request, timeout=TIMEOUT_SECONDS) as response:  # noqa: S310
        return int(response.status)
