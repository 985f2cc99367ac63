"""Web Push with VAPID (RFC 8030, 8291, 8292): the server's key pair, which push endpoints we
accept, and the RQ task that encrypts one notification and hands it to a browser's push service.
"""

from __future__ import annotations

import ipaddress
import json
import logging
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import requests
from cryptography.hazmat.primitives import serialization
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured, ValidationError
from django.core.validators import URLValidator
from django.db.models import F
from django.utils import timezone
from py_vapid import Vapid02
from py_vapid.utils import b64urlencode
from pywebpush import WebPushException, webpush

from notify.models import PushSubscription

log = logging.getLogger(__name__)

VAPID_FILE = "vapid.json"
DEFAULT_SUBJECT = "mailto:admin@localhost"
TIMEOUT_SECONDS = 10
# A browser that is offline gets the notification if it comes back within a day.
TTL_SECONDS = 24 * 3600
# Used by services.enqueue_push; the push service answers 429/5xx when it is busy.
RETRY_INTERVALS = [10, 60, 300]
# Push services that say the subscription is gone for good (RFC 8030 section 7.3).
GONE = (404, 410)
LOCAL_HOSTS = ("localhost", "127.0.0.1", "::1")


@dataclass(frozen=True)
class VapidKeys:
    private_pem: str
    # The applicationServerKey browsers subscribe with: the uncompressed P-256 point, base64url
    # without padding.
    public_key: str

    def signer(self) -> Vapid02:
        return Vapid02.from_pem(self.private_pem.encode())


def vapid_keys() -> VapidKeys:
    """The server's VAPID key pair, made on first use. Every web process and worker shares it
    through the data directory; a new pair would orphan every browser's subscription."""
    path = Path(settings.AGENTHUB_DATA_DIR) / VAPID_FILE
    if not path.exists():
        _create_keys(path)
    try:
        data = json.loads(path.read_text())
        return VapidKeys(str(data["private_key"]), str(data["public_key"]))
    except (ValueError, KeyError, TypeError) as exc:
        raise ImproperlyConfigured(
            f"{path} is not a VAPID key file ({exc!r}). Remove it to make a new key pair; "
            "browsers then have to turn notifications on again."
        ) from exc


def _create_keys(path: Path) -> None:
    vapid = Vapid02()
    vapid.generate_keys()
    point = vapid.public_key.public_bytes(
        serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
    )
    data = {"private_key": vapid.private_pem().decode(), "public_key": b64urlencode(point)}
    # mkstemp makes the file 0600; the hard link publishes it whole and never replaces a pair
    # another process made first (that one wins, this one is thrown away).
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".vapid-")
    try:
        with os.fdopen(fd, "w") as file:
            json.dump(data, file)
        try:
            os.link(tmp, path)
        except FileExistsError:
            pass
    finally:
        os.unlink(tmp)


def subject() -> str:
    """Who the push services contact about our traffic (a mailto: or https: URL)."""
    return getattr(settings, "AGENTHUB_VAPID_SUBJECT", "") or DEFAULT_SUBJECT


def insecure_localhost_allowed() -> bool:
    return bool(
        settings.DEBUG or getattr(settings, "AGENTHUB_PUSH_ALLOW_INSECURE_LOCALHOST", False)
    )


def endpoint_problem(url: str) -> str | None:
    """Why the server must not POST to this endpoint, or None. Checked when a browser subscribes
    and again before each push, since the endpoint is a URL a user handed us."""
    try:
        URLValidator(schemes=["http", "https"])(url)
    except ValidationError:
        return "endpoint must be the absolute https URL of a push service."
    parts = urlsplit(url)
    host = (parts.hostname or "").lower()
    if host in LOCAL_HOSTS or host.endswith(".localhost"):
        if insecure_localhost_allowed():
            return None
        return (
            "endpoint points at this machine; that is allowed only for development "
            "(AGENTHUB_DEBUG or AGENTHUB_PUSH_ALLOW_INSECURE_LOCALHOST)."
        )
    if parts.scheme != "https":
        return f"endpoint must use https, not {parts.scheme}: push services are https."
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return None
    if not address.is_global:
        return f"endpoint must be a push service on the internet, not {address}."
    return None


def send_job_push(subscription_id: int, payload: dict[str, Any]) -> str:
    """RQ task: deliver one notification to one browser. Raises on a failure worth retrying
    (RQ retries, see services.enqueue_push); a subscription the push service calls gone is
    deleted. Returns what happened, for the RQ dashboard."""
    subscription = PushSubscription.objects.filter(pk=subscription_id).first()
    if subscription is None:
        return "unsubscribed"
    problem = endpoint_problem(subscription.endpoint)
    if problem:
        log.warning("not pushing to subscription %s: %s", subscription_id, problem)
        return "refused"
    try:
        _post(subscription, payload)
    except WebPushException as exc:
        if getattr(exc.response, "status_code", None) in GONE:
            subscription.delete()
            return "gone"
        _count_failure(subscription_id)
        raise
    except requests.RequestException:
        _count_failure(subscription_id)
        raise
    PushSubscription.objects.filter(pk=subscription_id).update(
        last_success_at=timezone.now(), failures=0
    )
    return "sent"


def _post(subscription: PushSubscription, payload: dict[str, Any]) -> None:
    with requests.Session() as session:
        # Push services answer, they do not redirect; following one would let an endpoint
        # steer our POST somewhere endpoint_problem never saw.
        session.max_redirects = 0
        webpush(
            subscription.info(),
            json.dumps(payload),
            vapid_private_key=vapid_keys().signer(),
            vapid_claims={"sub": subject()},
            ttl=TTL_SECONDS,
            timeout=TIMEOUT_SECONDS,
            requests_session=session,
        )


def _count_failure(subscription_id: int) -> None:
    PushSubscription.objects.filter(pk=subscription_id).update(failures=F("failures") + 1)
