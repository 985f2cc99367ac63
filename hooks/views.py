"""The "Webhooks" section of the team's management page (jobs.teams): team admins add, edit,
switch off and on, and delete the team's hooks, rotate a hook's secret, and redeliver a delivery.
Each change is audited by hooks.services."""

from __future__ import annotations

from uuid import UUID

from django.contrib import messages
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, render
from django.views.decorators.http import require_http_methods, require_POST

from hooks import services
from hooks.forms import WebhookEditForm, WebhookForm
from hooks.models import Delivery, Webhook
from jobs.errors import ServiceError
from jobs.models import Team
from jobs.teams import _back, _manage_page, team_admin_view


@team_admin_view
@require_POST
def hook_add(request: HttpRequest, team: Team) -> HttpResponse:
    form = WebhookForm(request.POST)
    if form.is_valid():
        try:
            hook = services.create_hook(request.user, team, **form.cleaned_data)
        except services.Refused as exc:
            form.add_error("url", str(exc))
        else:
            messages.success(request, f"Added a webhook to {hook.url}; its secret is below it.")
            return _back(team, f"hook-{hook.pk}")
    return _manage_page(request, team, hook_form=form)


@team_admin_view
@require_http_methods(["GET", "POST"])
def hook_edit(request: HttpRequest, team: Team, pk: int) -> HttpResponse:
    hook = get_object_or_404(Webhook, team=team, job=None, pk=pk)
    initial = {"url": hook.url, "events": hook.events, "active": hook.active}
    form = WebhookEditForm(request.POST if request.method == "POST" else None, initial=initial)
    if form.is_valid():
        try:
            changed = services.update_hook(request.user, hook, **form.cleaned_data)
        except services.Refused as exc:
            form.add_error("url", str(exc))
        else:
            url = form.cleaned_data["url"].strip()
            messages.success(
                request, f"Saved the webhook to {url}." if changed else "Nothing changed."
            )
            return _back(team, f"hook-{hook.pk}")
    return render(request, "hooks/hook_form.html", {"team": team, "hook": hook, "form": form})


@team_admin_view
@require_POST
def hook_rotate_secret(request: HttpRequest, team: Team, pk: int) -> HttpResponse:
    hook = services.rotate_secret(
        request.user, get_object_or_404(Webhook, team=team, job=None, pk=pk)
    )
    messages.success(
        request,
        f"The webhook to {hook.url} has a new secret, under Secret below; every try from now "
        "on is signed with it, the old one no longer verifies.",
    )
    return _back(team, f"hook-{hook.pk}")


@team_admin_view
@require_POST
def hook_active(request: HttpRequest, team: Team, pk: int) -> HttpResponse:
    hook = get_object_or_404(Webhook, team=team, job=None, pk=pk)
    active = request.POST.get("active") == "1"
    if services.set_active(request.user, hook, active):
        state = "active again" if active else "inactive: it is sent nothing"
        messages.success(request, f"The webhook to {hook.url} is {state}.")
    return _back(team, f"hook-{hook.pk}")


@team_admin_view
@require_POST
def hook_delete(request: HttpRequest, team: Team, pk: int) -> HttpResponse:
    hook = get_object_or_404(Webhook, team=team, job=None, pk=pk)
    services.delete_hook(request.user, hook)
    messages.success(request, f"Deleted the webhook to {hook.url} and its delivery log.")
    return _back(team, "webhooks")


@team_admin_view
@require_POST
def delivery_redeliver(request: HttpRequest, team: Team, delivery_id: UUID) -> HttpResponse:
    delivery = get_object_or_404(
        Delivery.objects.select_related("hook"), hook__team=team, hook__job=None, pk=delivery_id
    )
    try:
        again = services.redeliver(request.user, delivery)
    except ServiceError as exc:
        messages.error(request, exc.detail)
    else:
        messages.success(request, f"Redelivering {delivery.event} as delivery {again.pk}.")
    return _back(team, f"hook-{delivery.hook_id}")
