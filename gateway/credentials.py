"""Setting, rotating and deleting a team's model credential: validated, encrypted, audited
without the value (the entry says which provider, which base URL and that a key was set)."""

from __future__ import annotations

from typing import Any

from django.db import transaction
from django.utils import timezone

from gateway.models import ModelCredential
from gateway.providers import WIRES, Provider
from jobs import services
from jobs.errors import BadInput, NotFound
from jobs.models import Team
from jobs.validation import check_http_url


def set_credential(
    actor: Any, team: Team, provider: str, key: str, base_url: str = ""
) -> ModelCredential:
    chosen = _provider(provider)
    key = key.strip()
    if not key:
        raise BadInput("The key is empty.", field="key")
    if base_url:
        check_http_url(base_url, "base_url")
    elif not WIRES[chosen].default_base_url:
        raise BadInput(f"{chosen.value} needs a base URL (your server's).", field="base_url")
    with transaction.atomic():
        credential = (
            ModelCredential.objects.select_for_update().filter(team=team, provider=chosen).first()
        )
        verb = "update" if credential else "create"
        old_url = credential.base_url if credential else ""
        credential = credential or ModelCredential(team=team, provider=chosen)
        credential.base_url = base_url
        credential.set_key(key)
        credential.updated_at = timezone.now()
        credential.save()
        services.audit_change(
            actor,
            verb,
            credential,
            changes={"base_url": (old_url, base_url)} if old_url != base_url else None,
            provider=chosen.value,
            key="set",
        )
    return credential


def delete_credential(actor: Any, team: Team, provider: str) -> None:
    chosen = _provider(provider)
    with transaction.atomic():
        credential = ModelCredential.objects.filter(team=team, provider=chosen).first()
        if credential is None:
            raise NotFound(f"Team {team.name} has no {chosen.value} credential.")
        services.audit_change(actor, "delete", credential, provider=chosen.value)
        credential.delete()


def _provider(name: str) -> Provider:
    try:
        return Provider(name)
    except ValueError:
        choices = ", ".join(p.value for p in Provider)
        raise BadInput(
            f"Unknown provider {name!r}; choose one of: {choices}.", field="provider"
        ) from None
