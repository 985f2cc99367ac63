"""Every change to webhooks and every delivery goes through here.

A job that settles into a new status (the jobs.signals.job_settled signal, on commit) becomes one
Delivery per interested hook: the team's hooks and the job's own callback. Each Delivery is POSTed
by the RQ task hooks.tasks.deliver, retried with exponential backoff; every try is logged on the
row. The body is JSON; `X-AgentHub-Signature: sha256=<hex>` is the HMAC-SHA256 of the exact body
with the hook's own secret, and `X-AgentHub-Delivery` the delivery's id (the same on every try).

Each try reads its hook as it is at send time: after a team admin edits the URL or rotates the
secret, every try from then on (retries of deliveries made before the change included) goes to
the new URL, signed with the new secret. A delivery keeps only its body, never a secret.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from functools import partial
from typing import Any

import urllib3
from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import URLValidator
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from hooks import guard, transport
from hooks.guard import Refused
from hooks.models import EVENT_STATUSES, Delivery, DeliveryStatus, Webhook, new_secret
from jobs.errors import BadInput, Conflict
from jobs.models import Job, Team
from jobs.serialize import job_summary
from jobs.services import audit_change

TIMEOUT_SECONDS = 10
# Seconds before each retry of a failed try, tripling: 7 tries over about an hour.
RETRY_INTERVALS = [10, 30, 90, 270, 810, 2430]
USER_AGENT = "AgentHub-Webhooks/1"


def allow_private() -> bool:
    return bool(getattr(settings, guard.ALLOW_SETTING, False))


def check_url(url: str) -> str:
    """The URL, stripped, if a hook may call it; raises Refused saying why not."""
    url = url.strip()
    try:
        URLValidator(schemes=list(guard.SCHEMES))(url)
    except ValidationError:
        raise Refused(f"Give an http:// or https:// URL, not {url!r}.") from None
    guard.resolve(url, allow_private=allow_private())
    return url


def signature(secret: str, body: bytes) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


# --- hooks -------------------------------------------------------------------------------------


def create_hook(actor: Any, team: Team, url: str, events: list[str] | None = None) -> Webhook:
    """A team's hook; raises Refused for a URL it may not call, BadInput for unknown events."""
    events = checked_events(events)
    url = check_url(url)
    with transaction.atomic():
        hook = Webhook.objects.create(team=team, url=url, events=events, created_by=actor)
        audit_change(actor, "create", hook, changes={"url": (None, url), "events": (None, events)})
    return hook


def checked_events(events: list[str] | None) -> list[str]:
    """The statuses sorted, without repeats; raises BadInput naming unknown ones."""
    events = sorted(set(events or []))
    unknown = set(events) - set(EVENT_STATUSES)
    if unknown:
        raise BadInput(
            f"Unknown job statuses {', '.join(sorted(unknown))}; choose among "
            f"{', '.join(EVENT_STATUSES)}, or none for every one.",
            field="events",
        )
    return events


def update_hook(actor: Any, hook: Webhook, *, url: str, events: list[str], active: bool) -> bool:
    """Change a hook's URL, statuses and whether it is active, in one audit entry with the old
    and new values. A new URL passes check_url as at creation (raises Refused). Whether anything
    changed: a form that changes nothing writes no entry."""
    events = checked_events(events)
    url = url.strip()
    if url != hook.url:
        url = check_url(url)
    with transaction.atomic():
        hook = Webhook.objects.select_for_update().get(pk=hook.pk)
        new = {"url": url, "events": events, "active": active}
        changes = {
            name: (getattr(hook, name), value)
            for name, value in new.items()
            if getattr(hook, name) != value
        }
        if not changes:
            return False
        for name, (_, value) in changes.items():
            setattr(hook, name, value)
        hook.save(update_fields=sorted(changes))
        audit_change(actor, "update", hook, changes=changes)
    return True


def rotate_secret(actor: Any, hook: Webhook) -> Webhook:
    """A new secret for the hook, signing every try from now on (see the module's docstring).
    The audit entry says that it was rotated, never either secret."""
    with transaction.atomic():
        hook = Webhook.objects.select_for_update().get(pk=hook.pk)
        hook.secret = new_secret()
        hook.save(update_fields=["secret"])
        audit_change(actor, "rotate_secret", hook)
    return hook


def set_active(actor: Any, hook: Webhook, active: bool) -> bool:
    """Whether it changed."""
    with transaction.atomic():
        hook = Webhook.objects.select_for_update().get(pk=hook.pk)
        if hook.active == active:
            return False
        hook.active = active
        hook.save(update_fields=["active"])
        audit_change(actor, "update", hook, changes={"active": (not active, active)})
    return True


def delete_hook(actor: Any, hook: Webhook) -> None:
    """Its delivery log goes with it."""
    with transaction.atomic():
        audit_change(actor, "delete", hook, changes={"url": (hook.url, None)})
        hook.delete()


def callback_hook(job: Job) -> Webhook | None:
    """The hook made from the job's callback_url (made on first use), or None without one."""
    if not job.callback_url:
        return None
    hook, _ = Webhook.objects.get_or_create(
        job=job,
        defaults={"team_id": job.team_id, "url": job.callback_url, "created_by": job.submitter},
    )
    return hook


def callback_secret(job: Job) -> str | None:
    """The secret that signs the job's callbacks. The submit answer gives it as
    `callback_secret`, the only place it is ever shown."""
    hook = callback_hook(job)
    return hook.secret if hook else None


# --- deliveries --------------------------------------------------------------------------------


def job_settled(job: Job) -> list[Delivery]:
    """Receives jobs.signals.job_settled (after commit) when a job settled into a new status: one
    delivery per active hook that wants the status, each sent by a worker."""
    callback_hook(job)
    hooks = Webhook.objects.filter(Q(job=job) | Q(team_id=job.team_id, job=None), active=True)
    wanted = [hook for hook in hooks.order_by("pk") if hook.wants(job.status)]
    if not wanted:
        return []
    event = f"job.{job.status}"
    body = json.dumps(
        {
            "event": event,
            "status": job.status,
            "at": timezone.now().isoformat(),
            "job": job_summary(job),
        }
    )
    with transaction.atomic():
        made = [Delivery.objects.create(hook=h, job=job, event=event, body=body) for h in wanted]
        for delivery in made:
            transaction.on_commit(partial(enqueue, delivery.pk))
    return made


def redeliver(actor: Any, delivery: Delivery) -> Delivery:
    """A new delivery (its own id and log of tries) of the very same body to the same hook."""
    hook = delivery.hook
    if not hook.active:
        raise Conflict(f"The webhook to {hook.url} is inactive; activate it to redeliver.")
    with transaction.atomic():
        again = Delivery.objects.create(
            hook=hook,
            job_id=delivery.job_id,
            event=delivery.event,
            body=delivery.body,
            redelivery_of=delivery,
        )
        audit_change(actor, "redeliver", hook, delivery=str(again.pk), of=str(delivery.pk))
        transaction.on_commit(partial(enqueue, again.pk))
    return again


def enqueue(delivery_id: Any) -> None:
    import django_rq
    from rq import Retry

    django_rq.get_queue("default").enqueue(
        "hooks.tasks.deliver",
        str(delivery_id),
        retry=Retry(max=len(RETRY_INTERVALS), interval=RETRY_INTERVALS),
        job_timeout=60,
        result_ttl=3600,
        failure_ttl=24 * 3600,
    )


class DeliveryFailed(Exception):
    """Raised by a failed try that RQ will retry."""


def attempt(delivery_id: str, *, retries_left: int = 0) -> Delivery | None:
    """One try of a delivery, logged on its row. Raises DeliveryFailed when it failed and
    `retries_left` says another try follows; the last failed try marks the delivery failed.
    A delivered (or failed, or deleted) one is left alone, so a duplicate RQ job is harmless."""
    delivery = Delivery.objects.select_related("hook").filter(pk=delivery_id).first()
    if delivery is None or delivery.status != DeliveryStatus.PENDING:
        return delivery  # its hook was deleted, or another try got there first
    started, clock = timezone.now(), time.monotonic()
    code, error, final = _send(delivery)
    ok = code is not None and 200 <= code < 300
    with transaction.atomic():
        delivery = Delivery.objects.select_for_update().get(pk=delivery.pk)
        delivery.attempts += 1
        delivery.tries.append(
            {
                "at": started.isoformat(),
                "status_code": code,
                "error": error,
                "ms": round((time.monotonic() - clock) * 1000),
            }
        )
        delivery.last_status_code, delivery.last_error = code, error
        delivery.last_attempt_at = started
        if ok:
            delivery.status, delivery.delivered_at = DeliveryStatus.DELIVERED, timezone.now()
        elif final or retries_left <= 0:
            delivery.status = DeliveryStatus.FAILED
        delivery.save()
    if delivery.status == DeliveryStatus.PENDING:
        raise DeliveryFailed(f"delivery {delivery.pk} to {delivery.hook.url}: {error}")
    return delivery


def _send(delivery: Delivery) -> tuple[int | None, str, bool]:
    """(status code, error, whether retrying is pointless)."""
    hook = delivery.hook
    if not hook.active:
        return None, "The webhook was deactivated before this try.", True
    body = delivery.body.encode()
    headers = {
        "Content-Type": "application/json",
        "User-Agent": USER_AGENT,
        "X-AgentHub-Event": delivery.event,
        "X-AgentHub-Delivery": str(delivery.pk),
        "X-AgentHub-Signature": signature(hook.secret, body),
    }
    try:
        target = guard.resolve(hook.url, allow_private=allow_private())
    except Refused as exc:
        # A name that does not resolve may resolve later; a refused address stays refused.
        return None, str(exc), not isinstance(exc, guard.Unresolved)
    try:
        answer = transport.post(target, body, headers, TIMEOUT_SECONDS)
    except (urllib3.exceptions.HTTPError, OSError) as exc:
        return None, f"No answer from {target.address} port {target.port}: {exc}", False
    if 200 <= answer.status < 300:
        return answer.status, "", False
    return answer.status, f"HTTP {answer.status}: {answer.text[:300]}", False


# --- the team's page ---------------------------------------------------------------------------


RECENT_DELIVERIES = 10


def team_hooks(team: Team) -> list[tuple[Webhook, list[Delivery]]]:
    """The team's own hooks, each with its latest deliveries (for the team's page)."""
    hooks = Webhook.objects.filter(team=team, job=None).order_by("pk")
    return [(hook, _recent(hook)) for hook in hooks]


def _recent(hook: Webhook) -> list[Delivery]:
    return list(hook.deliveries.select_related("job").order_by("-created_at")[:RECENT_DELIVERIES])
