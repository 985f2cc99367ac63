"""API tokens: a person creates, lists and revokes their own (through /api/v1/tokens or the page
at /settings/tokens/), and jobs/api.py turns a presented key into its token."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from django import forms
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.db import transaction
from django.db.models import QuerySet
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils import timezone
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_http_methods, require_POST

from jobs import services
from jobs.errors import BadInput, NotFound, ServiceError, Unauthorized
from jobs.models import ApiToken, hash_token

MAX_DAYS = 3650


def of(user: Any) -> QuerySet[ApiToken]:
    """The user's tokens, newest first, revoked ones included (the audit trail names them)."""
    return ApiToken.objects.filter(user=user).order_by("-created_at", "-pk")


def expiry(*, days: int | None = None, at: datetime | None = None) -> datetime | None:
    """When a new token should expire: in `days`, at `at`, or never."""
    if days is not None and at is not None:
        raise BadInput("Give expires_in_days or expires_at, not both.", field="expires_at")
    if days is not None:
        if not 1 <= days <= MAX_DAYS:
            raise BadInput(
                f"expires_in_days must be from 1 to {MAX_DAYS}, not {days}.",
                field="expires_in_days",
            )
        return timezone.now() + timedelta(days=days)
    if at is not None:
        if timezone.is_naive(at):
            raise BadInput(
                "expires_at needs a time zone, e.g. 2030-01-31T12:00Z.", field="expires_at"
            )
        if at <= timezone.now():
            raise BadInput(f"expires_at {at.isoformat()} is in the past.", field="expires_at")
    return at


def create(user: Any, name: str, *, expires_at: datetime | None = None) -> tuple[ApiToken, str]:
    """A new token and its key; only the key's hash is kept, so this is the one time it is seen."""
    name = name.strip()
    if not name:
        raise BadInput("Name the token, e.g. after the machine or script using it.", field="name")
    if len(name) > 100:
        raise BadInput(f"The name is {len(name)} characters; at most 100.", field="name")
    with transaction.atomic():
        token, key = ApiToken.issue(user, name, expires_at=expires_at)
        services.audit_change(user, "create", token, expires_at=_iso(expires_at))
    return token, key


def revoke(user: Any, token_id: int) -> ApiToken:
    """Revoke one of the user's own tokens; someone else's is NotFound, never a hint it exists."""
    with transaction.atomic():
        token = of(user).select_for_update().filter(pk=token_id).first()
        if token is None:
            raise NotFound(f"You have no API token {token_id}.")
        if token.revoked_at is None:
            token.revoked_at = timezone.now()
            token.save(update_fields=["revoked_at"])
            services.audit_change(user, "revoke", token)
    return token


# A token's last use is written at most this often (the tokens page shows it to the minute): a
# write on every call would queue each API request, GETs too, for SQLite's one write lock.
LAST_USE_PRECISION = timedelta(minutes=1)


def authenticate(key: str) -> ApiToken:
    """The usable token with this key, its use recorded; Unauthorized saying why otherwise."""
    token = ApiToken.objects.select_related("user").filter(key_hash=hash_token(key)).first()
    if token is None or not token.user.is_active:
        raise Unauthorized("The API token is not valid.")
    if token.revoked_at is not None:
        raise Unauthorized(f"The API token {token.name!r} was revoked.")
    if not token.is_usable:
        raise Unauthorized(
            f"The API token {token.name!r} expired on {token.expires_at:%Y-%m-%d %H:%M} UTC."
        )
    now = timezone.now()
    if token.last_used_at is None or now - token.last_used_at >= LAST_USE_PRECISION:
        token.last_used_at = now
        ApiToken.objects.filter(pk=token.pk).update(last_used_at=now)
    return token


def as_dict(token: ApiToken) -> dict[str, Any]:
    return {
        "id": token.pk,
        "name": token.name,
        "prefix": token.prefix,
        "created_at": _iso(token.created_at),
        "last_used_at": _iso(token.last_used_at),
        "expires_at": _iso(token.expires_at),
        "revoked_at": _iso(token.revoked_at),
    }


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


# --- the page --------------------------------------------------------------------------------


class TokenForm(forms.Form):
    name = forms.CharField(max_length=100, help_text="Where it is used, e.g. laptop or CI.")
    expires_in_days = forms.TypedChoiceField(
        label="Expires",
        choices=[("30", "in 30 days"), ("90", "in 90 days"), ("365", "in a year"), ("", "never")],
        coerce=int,
        empty_value=None,
        required=False,
        initial="90",
    )


@never_cache  # the response may show a new key
@login_required
@require_http_methods(["GET", "POST"])
def page(request: HttpRequest) -> HttpResponse:
    form = TokenForm(request.POST or None)
    created = None
    if form.is_valid():
        try:
            days = form.cleaned_data["expires_in_days"]
            token, key = create(
                request.user, form.cleaned_data["name"], expires_at=expiry(days=days)
            )
            created = {"token": token, "key": key}
            form = TokenForm()
        except ServiceError as exc:
            form.add_error(exc.field if exc.field in form.fields else None, exc.detail)
    context = {"form": form, "tokens": of(request.user), "created": created}
    return render(request, "jobs/tokens.html", context)


@login_required
@require_POST
def revoke_view(request: HttpRequest, token_id: int) -> HttpResponse:
    try:
        token = revoke(request.user, token_id)
    except NotFound as exc:
        raise Http404(exc.detail) from None
    messages.success(request, f"Revoked {token}; it is refused from now on.")
    return redirect("tokens")
