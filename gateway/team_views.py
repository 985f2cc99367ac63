"""The "Model credentials" section of the team's management page (jobs.teams): team admins set,
replace and delete the team's key per provider. Keys are write-only: the page says which
providers have one, never the key. Audited by gateway.credentials."""

from __future__ import annotations

from django.contrib import messages
from django.http import HttpRequest, HttpResponse
from django.views.decorators.http import require_POST

from gateway.credentials import delete_credential, set_credential
from gateway.forms import CredentialForm
from jobs.errors import ServiceError
from jobs.models import Team
from jobs.teams import _back, _manage_page, team_admin_view


@team_admin_view
@require_POST
def credential_set(request: HttpRequest, team: Team) -> HttpResponse:
    form = CredentialForm(request.POST)
    if form.is_valid():
        try:
            credential = set_credential(request.user, team, **form.cleaned_data)
        except ServiceError as exc:
            form.add_error(exc.field if exc.field in form.fields else None, exc.detail)
        else:
            messages.success(request, f"Stored the {credential.provider} key (encrypted).")
            return _back(team, "credentials")
    return _manage_page(request, team, credential_form=form)


@team_admin_view
@require_POST
def credential_delete(request: HttpRequest, team: Team, provider: str) -> HttpResponse:
    try:
        delete_credential(request.user, team, provider)
    except ServiceError as exc:
        messages.error(request, exc.detail)
    else:
        messages.success(request, f"Deleted the {provider} key.")
    return _back(team, "credentials")
