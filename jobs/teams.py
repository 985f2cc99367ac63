"""Team management for team admins, who are not Django staff: members and roles, repositories,
agents (with their review policy) and the team's settings. Staff may manage every team.

Every change is one transaction that writes one audit entry naming the person
(services.audit_change); a form that changes nothing writes none.
"""

from __future__ import annotations

import logging
import shutil
from collections.abc import Callable
from functools import partial, wraps
from pathlib import Path
from typing import Any

from django import forms
from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.db import transaction
from django.db.models import Count, ProtectedError, QuerySet
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils.functional import SimpleLazyObject
from django.views.decorators.http import require_http_methods, require_POST

from gateway.forms import CredentialForm
from gateway.models import ModelCredential
from hooks import services as hooks
from hooks.forms import WebhookForm
from jobs import access, services, workspace
from jobs.errors import Conflict, NotFound, ServiceError
from jobs.models import Agent, Membership, Repository, Role, Team
from jobs.team_forms import (
    AGENT_FIELDS,
    AddMemberForm,
    AgentForm,
    RegisterRepositoryForm,
    RepositoryForm,
    RoleForm,
    TeamSettingsForm,
)

log = logging.getLogger(__name__)

# --- who may manage ----------------------------------------------------------------------------


def administered_teams(user: Any) -> QuerySet[Team]:
    """Every team for staff; otherwise the teams the user is an admin of."""
    if not user.is_authenticated:
        return Team.objects.none()
    if user.is_staff:
        return Team.objects.all()
    return Team.objects.filter(memberships__user=user, memberships__role=Role.ADMIN)


def manage_link(request: HttpRequest) -> dict[str, Any]:
    """Context processor for base.html's "Manage team" link: whether the user manages any team.
    Lazy, so a page that does not ask costs no query."""
    return {"manages_teams": SimpleLazyObject(lambda: administered_teams(request.user).exists())}


TeamView = Callable[..., HttpResponse]


def team_admin_view(view: TeamView) -> TeamView:
    """The view gets the team named in the URL if the user may manage it. Outsiders get 404, as
    everywhere for another team's things; the team's members and reviewers get 403 saying why."""

    @login_required
    @wraps(view)
    def wrapper(request: HttpRequest, team_name: str, *args: Any, **kwargs: Any) -> HttpResponse:
        team = Team.objects.filter(name=team_name).first()
        member = access.membership(request.user, team) if team else None
        if team is None or (member is None and not request.user.is_staff):
            raise Http404(f"No team {team_name!r} among yours.")
        if member is not None and member.role != Role.ADMIN and not request.user.is_staff:
            admins = team.memberships.filter(role=Role.ADMIN).select_related("user")
            context = {"team": team, "member": member, "admins": admins}
            return render(request, "teams/forbidden.html", context, status=403)
        return view(request, team, *args, **kwargs)

    return wrapper


# --- forms -------------------------------------------------------------------------------------


# --- changes -----------------------------------------------------------------------------------


def add_member(actor: Any, team: Team, user: Any, role: str) -> Membership:
    with transaction.atomic():
        membership = Membership.objects.create(team=team, user=user, role=role)
        services.audit_change(actor, "create", membership, changes={"role": (None, role)})
    return membership


def change_role(actor: Any, membership: Membership, role: str) -> bool:
    """Whether the role changed. Refuses to demote the team's last admin."""
    with transaction.atomic():
        membership = _locked(membership)
        old = membership.role
        if old == role:
            return False
        if old == Role.ADMIN:
            _keep_an_admin(membership, "demote")
        membership.role = role
        membership.save(update_fields=["role"])
        services.audit_change(actor, "update", membership, changes={"role": (old, role)})
    return True


def remove_member(actor: Any, membership: Membership) -> None:
    with transaction.atomic():
        membership = _locked(membership)
        if membership.role == Role.ADMIN:
            _keep_an_admin(membership, "remove")
        membership.delete()
        services.audit_change(
            actor, "delete", membership, changes={"role": (membership.role, None)}
        )


def _locked(membership: Membership) -> Membership:
    # Changes to a team's members take turns on the team row, so two admins demoting each other
    # at once cannot leave the team without one.
    Team.objects.select_for_update().filter(pk=membership.team_id).first()
    return Membership.objects.select_related("team", "user").get(pk=membership.pk)


def _keep_an_admin(membership: Membership, verb: str) -> None:
    others = Membership.objects.filter(team_id=membership.team_id, role=Role.ADMIN)
    if not others.exclude(pk=membership.pk).exists():
        raise Conflict(
            f"Cannot {verb} {membership.user.get_username()}: they are the last admin of team "
            f"{membership.team.name}. Make someone else an admin first."
        )


def delete_repository(actor: Any, repo: Repository) -> str | None:
    """Delete a repository no job has used, and AgentHub's bare copy of it (the store), but only
    when that copy really lies inside AGENTHUB_DATA_DIR/stores/. Its source and push URL are never
    touched. None when the store was removed; otherwise why it was not, for the person."""
    store = own_store(repo)
    with transaction.atomic():
        # Locked so that a job submitted meanwhile either lands first, and is counted, or fails
        # on the deleted row (Job.repository is PROTECT).
        locked = Repository.objects.select_for_update().filter(pk=repo.pk).first()
        if locked is None:
            raise NotFound(f"Repository {repo.name} was deleted meanwhile.")
        job_count = locked.jobs.count()
        if job_count:
            raise Conflict(
                f"Repository {locked.name} cannot be deleted: its {job_count} job(s) keep it in "
                "their history. Rename it instead."
            )
        locked.delete()
        services.audit_change(
            actor, "delete", locked, store=locked.store_path, remove_store=store is not None
        )
    # Only after the commit: a rolled-back delete must still find its store.
    if store is None:
        real = Path(repo.store_path).resolve()
        where = repo.store_path if str(real) == repo.store_path else f"{repo.store_path} (→ {real})"
        return (
            f"Its store {where} was left on disk: it is not inside AgentHub's stores "
            f"({settings.AGENTHUB_DATA_DIR / 'stores'}), and AgentHub deletes nothing outside them."
        )
    try:
        shutil.rmtree(store)  # removes symlinks inside the store, never what they point to
    except FileNotFoundError:
        pass  # nothing of it was left on disk
    except OSError as exc:
        log.warning("Could not remove the store %s of deleted repository %s: %s", store, repo, exc)
        return f"Its store {store} could not be removed ({exc}); remove it by hand."
    return None


def own_store(repo: Repository) -> Path | None:
    """The store's real path if it lies where register_repository makes stores, under
    AGENTHUB_DATA_DIR/stores/ (symlinks resolved, so none can lead outside), else None."""
    if not repo.store_path:
        return None
    stores = (Path(settings.AGENTHUB_DATA_DIR) / "stores").resolve()
    store = Path(repo.store_path).resolve()
    return store if store != stores and store.is_relative_to(stores) else None


def values(form: forms.ModelForm) -> dict[str, Any]:
    """The instance's values of the form's fields. Taken before is_valid() for the old values:
    validating writes the new ones into the instance."""
    return {name: getattr(form.instance, name) for name in form.fields}


def save_with_audit(actor: Any, form: forms.ModelForm, before: dict[str, Any] | None) -> bool:
    """Save a valid ModelForm and audit what changed against `before` (None: a new object).
    Whether anything was saved."""
    after = values(form)
    changes: dict[str, tuple[Any, Any]]
    if before is None:
        changes = {name: (None, value) for name, value in after.items()}
        if "secrets" in changes:
            changes["secrets"] = ({}, after["secrets"])  # so the entry names the new secrets
    else:
        changes = {
            name: (before[name], after[name]) for name in after if before[name] != after[name]
        }
        if not changes:
            return False
    with transaction.atomic():
        obj = form.save()
        services.audit_change(actor, "create" if before is None else "update", obj, changes=changes)
    return True


# --- pages -------------------------------------------------------------------------------------


@login_required
def team_list(request: HttpRequest) -> HttpResponse:
    # Counted over a fresh queryset: administered_teams' join on memberships would count 1.
    teams = (
        Team.objects.filter(pk__in=administered_teams(request.user))
        .annotate(
            member_count=Count("memberships", distinct=True),
            repository_count=Count("repositories", distinct=True),
            agent_count=Count("agents", distinct=True),
        )
        .order_by("name")
    )
    return render(request, "teams/list.html", {"teams": teams})


@team_admin_view
def manage(request: HttpRequest, team: Team) -> HttpResponse:
    return _manage_page(request, team)


def _manage_page(request: HttpRequest, team: Team, **forms_: forms.BaseForm) -> HttpResponse:
    agents = list(
        Agent.objects.filter(team=team).annotate(job_count=Count("jobs")).order_by("name")
    )
    own = {agent.name for agent in agents}
    context = {
        "team": team,
        "members": team.memberships.select_related("user").order_by("user__username"),
        "roles": Role.choices,
        "repositories": team.repositories.annotate(job_count=Count("jobs")).order_by("name"),
        "agents": agents,
        "presets": [(p, p.name in own) for p in Agent.objects.filter(team=None).order_by("name")],
        "add_member_form": AddMemberForm(team=team),
        "register_form": RegisterRepositoryForm(),
        "settings_form": TeamSettingsForm(instance=team),
        "hooks": hooks.team_hooks(team),
        "hook_form": WebhookForm(),
        "credentials": ModelCredential.objects.filter(team=team).order_by("provider"),
        "credential_form": CredentialForm(),
        **forms_,
    }
    return render(request, "teams/manage.html", context)


def _back(team: Team, section: str) -> HttpResponse:
    return redirect(reverse("team-manage", args=[team.name]) + f"#{section}")


@team_admin_view
@require_POST
def member_add(request: HttpRequest, team: Team) -> HttpResponse:
    form = AddMemberForm(request.POST, team=team)
    if not form.is_valid():
        return _manage_page(request, team, add_member_form=form)
    user, role = form.cleaned_data["username"], form.cleaned_data["role"]
    add_member(request.user, team, user, role)
    messages.success(request, f"Added {user.get_username()} as {role}.")
    return _back(team, "members")


@team_admin_view
@require_POST
def member_role(request: HttpRequest, team: Team, pk: int) -> HttpResponse:
    membership = get_object_or_404(Membership.objects.select_related("user"), team=team, pk=pk)
    form = RoleForm(request.POST)
    name = membership.user.get_username()
    if not form.is_valid():
        messages.error(request, f"Choose a role for {name}: member, reviewer or admin.")
        return _back(team, "members")
    role = form.cleaned_data["role"]
    try:
        if change_role(request.user, membership, role):
            messages.success(request, f"{name} is now {role}.")
    except ServiceError as exc:
        messages.error(request, exc.detail)
    return _leave_if_no_longer_admin(request, team)


@team_admin_view
@require_POST
def member_remove(request: HttpRequest, team: Team, pk: int) -> HttpResponse:
    membership = get_object_or_404(Membership.objects.select_related("user"), team=team, pk=pk)
    try:
        remove_member(request.user, membership)
        messages.success(request, f"Removed {membership.user.get_username()} from {team.name}.")
    except ServiceError as exc:
        messages.error(request, exc.detail)
    return _leave_if_no_longer_admin(request, team)


def _leave_if_no_longer_admin(request: HttpRequest, team: Team) -> HttpResponse:
    # An admin who just demoted or removed themselves may no longer see the page.
    if not administered_teams(request.user).filter(pk=team.pk).exists():
        return redirect("team-list")
    return _back(team, "members")


@team_admin_view
@require_POST
def repository_register(request: HttpRequest, team: Team) -> HttpResponse:
    form = RegisterRepositoryForm(request.POST)
    if form.is_valid():
        try:
            repo = services.register_repository(request.user, team, **form.cleaned_data)
        except ServiceError as exc:
            form.add_error(exc.field if exc.field in form.fields else None, exc.detail)
        else:
            messages.success(
                request, f"Registered {repo.name} (default branch {repo.default_branch})."
            )
            return _back(team, "repositories")
    return _manage_page(request, team, register_form=form)


@team_admin_view
@require_http_methods(["GET", "POST"])
def repository_edit(request: HttpRequest, team: Team, name: str) -> HttpResponse:
    repo = get_object_or_404(Repository, team=team, name=name)
    form = RepositoryForm(request.POST or None, instance=repo)
    before = values(form)
    if request.method == "POST" and form.is_valid():
        changed = save_with_audit(request.user, form, before)
        saved = f"Saved {repo.name}" + ("." if repo.name == name else f" (renamed from {name}).")
        messages.success(request, saved if changed else "Nothing changed.")
        return _back(team, "repositories")
    shown = Repository.objects.get(pk=repo.pk)
    context = {
        "team": team,
        "repository": shown,
        "source": workspace.redacted(shown.source),
        "form": form,
    }
    return render(request, "teams/repository_form.html", context)


@team_admin_view
@require_POST
def repository_rebuild(request: HttpRequest, team: Team, name: str) -> HttpResponse:
    repo = services.rebuild_environment(
        request.user, get_object_or_404(Repository, team=team, name=name)
    )
    messages.success(request, f"{repo.name}'s next attempt sets its environment up afresh.")
    return redirect("team-repository", team.name, repo.name)


@team_admin_view
@require_http_methods(["GET", "POST"])
def repository_delete(request: HttpRequest, team: Team, name: str) -> HttpResponse:
    repo = get_object_or_404(Repository, team=team, name=name)
    if request.method == "GET":
        context = {
            "team": team,
            "repository": repo,
            "job_count": repo.jobs.count(),
            "store": own_store(repo),
            "data_dir": settings.AGENTHUB_DATA_DIR,
        }
        return render(request, "teams/repository_delete.html", context)
    try:
        store_kept = delete_repository(request.user, repo)
    except Conflict as exc:
        messages.error(request, exc.detail)
        return redirect("team-repository", team.name, name)
    except ServiceError as exc:
        messages.error(request, exc.detail)
        return _back(team, "repositories")
    if store_kept is None:
        messages.success(request, f"Deleted repository {name} and AgentHub's copy of it.")
    else:
        messages.warning(request, f"Deleted repository {name}. {store_kept}")
    return _back(team, "repositories")


@team_admin_view
@require_http_methods(["GET", "POST"])
def agent_edit(request: HttpRequest, team: Team, name: str | None = None) -> HttpResponse:
    agent = get_object_or_404(Agent, team=team, name=name) if name else Agent(team=team)
    form = AgentForm(
        request.POST or None, instance=agent, team=team, initial=_from_preset(request, name)
    )
    before = values(form) if name else None
    if request.method == "POST" and form.is_valid():
        changed = save_with_audit(request.user, form, before)
        verb = "Created" if before is None else "Saved"
        messages.success(request, f"{verb} agent {agent.name}." if changed else "Nothing changed.")
        return _back(team, "agents")
    return render(request, "teams/agent_form.html", {"team": team, "name": name, "form": form})


def _from_preset(request: HttpRequest, name: str | None) -> dict[str, Any]:
    """A new agent may start as a copy of a built-in one (`?from=codex`): its fields, not its
    secrets (presets have none). Its name too, so saving it as is replaces the preset for the
    team."""
    chosen = request.GET.get("from", "")
    preset = Agent.objects.filter(team=None, name=chosen).first() if chosen and not name else None
    if preset is None:
        return {}
    return {field: getattr(preset, field) for field in AGENT_FIELDS if field != "secrets"}


@team_admin_view
@require_http_methods(["GET", "POST"])
def agent_delete(request: HttpRequest, team: Team, name: str) -> HttpResponse:
    agent = get_object_or_404(Agent, team=team, name=name)
    if request.method == "GET":
        context = {"team": team, "agent": agent, "job_count": agent.jobs.count()}
        return render(request, "teams/agent_delete.html", context)
    try:
        with transaction.atomic():
            agent.delete()
            services.audit_change(request.user, "delete", agent)
    except ProtectedError:
        messages.error(
            request,
            f"Agent {name} cannot be deleted: its {agent.jobs.count()} job(s) keep it in their "
            "history. Edit it instead.",
        )
        return redirect("team-agent", team.name, name)
    messages.success(request, f"Deleted agent {name}.")
    return _back(team, "agents")


@team_admin_view
@require_POST
def team_settings(request: HttpRequest, team: Team) -> HttpResponse:
    form = TeamSettingsForm(request.POST, instance=Team.objects.get(pk=team.pk))
    before = values(form)
    if not form.is_valid():
        return _manage_page(request, team, settings_form=form)
    if save_with_audit(request.user, form, before):
        # A higher limit lets waiting attempts start now rather than at the next reconcile.
        transaction.on_commit(partial(services.dispatch, team.pk))
        messages.success(request, "Saved the team's settings.")
    else:
        messages.success(request, "Nothing changed.")
    return _back(team, "settings")
