"""Team management for team admins, who are not Django staff: members and roles, repositories,
agents (with their review policy) and the team's settings. Staff may manage every team.

Every change is one transaction that writes one audit entry naming the person
(services.audit_change); a form that changes nothing writes none.
"""

from __future__ import annotations

import json
import logging
import shutil
from collections.abc import Callable
from functools import partial, wraps
from pathlib import Path
from typing import Any

from django import forms
from django.conf import settings
from django.contrib import messages
from django.contrib.auth import get_user_model
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
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
from jobs.models import NAME_VALIDATOR, Agent, Membership, Repository, Role, Team

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


class AddMemberForm(forms.Form):
    username = forms.CharField(max_length=150, help_text="An existing account.")
    role = forms.ChoiceField(choices=Role.choices, initial=Role.MEMBER)

    def __init__(self, *args: Any, team: Team, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.team = team

    def clean_username(self) -> Any:
        """The user account itself (not its name)."""
        name = self.cleaned_data["username"].strip()
        user = get_user_model()._default_manager.filter(username=name).first()
        if user is None:
            raise ValidationError(
                f"No user named {name!r}. Check the spelling, or ask a site admin to create "
                "the account first."
            )
        existing = Membership.objects.filter(team=self.team, user=user).first()
        if existing is not None:
            raise ValidationError(
                f"{name} is already a {existing.role} of team {self.team.name}; change the "
                "role in the list of members instead."
            )
        return user


class RoleForm(forms.Form):
    role = forms.ChoiceField(choices=Role.choices)


def _check_push_url(value: str) -> str:
    url = value.strip()
    if not url:
        return ""
    if url.startswith("-") or any(ord(c) < 32 for c in url):
        raise ValidationError(
            "A push URL may not start with '-' or hold control characters: give a URL "
            "(https://, ssh://, file://) or the path of a bare repository on this server."
        )
    remote = "://" in url or ":" in url.split("/")[0]
    if not remote and not Path(url).is_dir():
        raise ValidationError(
            f"No such directory: {url}. Give the path of a bare repository on this server, "
            "or a URL (https://, ssh://, file://)."
        )
    return url


class RegisterRepositoryForm(forms.Form):
    name = forms.CharField(max_length=64, validators=[NAME_VALIDATOR])
    source = forms.CharField(
        max_length=1000, help_text="A local path or a clone URL; AgentHub keeps its own copy."
    )
    push_url = forms.CharField(
        label="Push URL",
        max_length=1000,
        required=False,
        help_text="Where merged results are pushed. Empty: they stay in AgentHub's copy.",
    )

    def clean_push_url(self) -> str:
        return _check_push_url(self.cleaned_data["push_url"])


class RepositoryForm(forms.ModelForm):
    class Meta:
        model = Repository
        fields = ["name", "push_url", "default_branch"]
        labels = {"push_url": "Push URL"}
        help_texts = {
            "name": "Its jobs keep their history; the API, the CLI and MCP clients use the new "
            "name from then on.",
            "push_url": "Where merged results are pushed. Empty: they stay in AgentHub's copy.",
            "default_branch": "Jobs start from it unless they name another ref.",
        }

    def clean_name(self) -> str:
        # The model's unique (team, name) constraint is not checked by the form: team is not
        # one of its fields.
        name = self.cleaned_data["name"]
        team = self.instance.team
        taken = Repository.objects.filter(team=team, name=name).exclude(pk=self.instance.pk)
        if taken.exists():
            raise ValidationError(f"Team {team.name} already has a repository named {name!r}.")
        return name

    def clean_push_url(self) -> str:
        return _check_push_url(self.cleaned_data["push_url"])

    def clean_default_branch(self) -> str:
        branch = self.cleaned_data["default_branch"].strip()
        store = Path(self.instance.store_path)
        try:
            workspace.validate_ref_name(branch)
            if branch.startswith(ATTEMPT_BRANCHES):
                raise workspace.RefNotFound(branch)
            workspace.resolve_commit(store, f"refs/heads/{branch}")
        except workspace.InvalidRef as exc:
            raise ValidationError(str(exc)) from None
        except workspace.RefNotFound:
            raise ValidationError(
                f"No branch {branch!r} in {self.instance.name}; its branches are: "
                f"{', '.join(_branches(store)) or 'none'}."
            ) from None
        return branch


# The store also holds every attempt's result as a branch agenthub/<job>/<n> (services.py).
ATTEMPT_BRANCHES = "agenthub/"


def _branches(store: Path) -> list[str]:
    listed = workspace.run_git(
        ["for-each-ref", "--format=%(refname:strip=2)", "refs/heads/"], git_dir=store
    )
    names = listed.stdout.decode(errors="replace").split()
    return [name for name in names if not name.startswith(ATTEMPT_BRANCHES)]


class SecretsInput(forms.Textarea):
    """Secret values are write-only: the field never shows a value, not even the one just sent."""

    def format_value(self, value: Any) -> str | None:
        return None


AGENT_FIELDS = [
    "name",
    "description",
    "command",
    "provider",
    "model",
    "output_format",
    "backend",
    "image",
    "timeout_seconds",
    "cpus",
    "memory_mb",
    "max_processes",
    "egress",
    "egress_allowlist",
    "budget_usd",
    "budget_requests",
    "required_approvals",
    "silent_merge",
    "retry_allowed",
    "report_only",
    "secrets",
]


class AgentForm(forms.ModelForm):
    """The model's validators and Agent.clean (image reference, bash syntax, secret names) run
    through the ModelForm's full_clean, so their errors land on the fields they concern."""

    secrets = forms.CharField(
        required=False,
        widget=SecretsInput(attrs={"rows": 3, "autocomplete": "off", "spellcheck": "false"}),
    )

    class Meta:
        model = Agent
        fields = AGENT_FIELDS
        labels = {
            "timeout_seconds": "Timeout (seconds)",
            "cpus": "CPUs",
            "memory_mb": "Memory (MB)",
            "egress": "Network egress",
            "egress_allowlist": "Egress allowlist",
            "budget_usd": "Budget per attempt (US$)",
            "budget_requests": "Budget per attempt (model requests)",
            "provider": "Model provider",
            "output_format": "Output read as",
            "required_approvals": "Required approvals (review policy)",
            "silent_merge": "Merge without review when only these paths change",
        }
        help_texts = {
            "command": "A bash script run in the workspace. The instruction is in "
            "$AGENTHUB_PROMPT and the file $AGENTHUB_PROMPT_FILE.",
            "image": "Docker image for the docker backend; empty: the server's sandbox image.",
            "required_approvals": "How many reviewers must approve a result before it merges.",
            "report_only": "The agent never changes code; its log is the result.",
            "provider": "For an AI agent: whose model it calls, through AgentHub's gateway with "
            "the team's credential for that provider (the key never enters the sandbox).",
            "model": "The model it asks for; the command gets it as $AGENTHUB_MODEL.",
            "egress": "What the sandbox may reach, through AgentHub's proxy: nothing, the "
            "allowlist below, or any public address. Every connection is an event.",
            "egress_allowlist": "One `[METHODS] host[:port]` per line, e.g. pypi.org, "
            "*.github.com:443 or GET example.com:80; `registries` for the package registries. "
            "Private and loopback addresses only when named exactly.",
            "silent_merge": "One gitignore-style pattern per line, e.g. docs/** or *.md "
            "(!pattern excludes). A result whose every changed path matches merges at once, "
            "unreviewed, and the audit trail says so. Empty: every result is reviewed.",
        }
        widgets = {
            "command": forms.Textarea(attrs={"rows": 6, "spellcheck": "false"}),
            "egress_allowlist": forms.Textarea(attrs={"rows": 3, "spellcheck": "false"}),
            "silent_merge": forms.Textarea(attrs={"rows": 3, "spellcheck": "false"}),
        }

    def __init__(self, *args: Any, team: Team, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.team = self.instance.team = team
        names = sorted(self.instance.secrets or {})
        self.fields["secrets"].help_text = (
            f"Set now: {', '.join(names)}. " if names else "None set. "
        ) + (
            'A JSON object of environment variables, e.g. {"API_KEY": "..."}, replaces them '
            "all; {} removes them; empty keeps them. Values are masked in logs and never shown."
        )

    def clean_name(self) -> str:
        name = self.cleaned_data["name"]
        taken = Agent.objects.filter(team=self.team, name=name).exclude(pk=self.instance.pk)
        if taken.exists():
            raise ValidationError(f"Team {self.team.name} already has an agent named {name!r}.")
        return name

    def clean_secrets(self) -> Any:
        text = self.cleaned_data["secrets"].strip()
        if not text:
            return self.instance.secrets
        try:
            value = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ValidationError(
                f"Not valid JSON ({exc.msg}, line {exc.lineno} column {exc.colno}): write an "
                'object such as {"API_KEY": "value"}, or {} to remove them all.'
            ) from None
        if not isinstance(value, dict):
            raise ValidationError('Write a JSON object such as {"API_KEY": "value"}.')
        return value


class TeamSettingsForm(forms.ModelForm):
    class Meta:
        model = Team
        fields = ["concurrency_limit"]
        labels = {"concurrency_limit": "Concurrent attempts"}
        help_texts = {
            "concurrency_limit": "How many of the team's attempts may run at once (1-100); "
            "the rest wait in the queue."
        }


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
    context = {"team": team, "repository": Repository.objects.get(pk=repo.pk), "form": form}
    return render(request, "teams/repository_form.html", context)


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
