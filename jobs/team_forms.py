"""The forms of the team pages (jobs/teams.py) and of the API that shares their validation
(jobs/api_agents.py, jobs/api_repos.py): members, repositories, agents, the team's settings.
Secrets are write-only in every one of them."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from django import forms
from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError

from jobs import git_auth, workspace
from jobs.models import NAME_VALIDATOR, Agent, Membership, Repository, Role, Team


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


def secrets_help(current: Any, who: str) -> str:
    names = sorted(current or {})
    return (f"Set now: {', '.join(names)}. " if names else "None set. ") + (
        f'Environment variables for {who}: a JSON object, e.g. {{"API_KEY": "..."}}, '
        "replaces them all; {} removes them; empty keeps them. Values are masked in logs and "
        "never shown."
    )


def parse_secrets(text: str, current: Any) -> Any:
    """A secrets field's input: empty keeps the current ones, else a JSON object replaces them
    (the model's clean() checks the names)."""
    text = text.strip()
    if not text:
        return current
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


class SecretsInput(forms.Textarea):
    """Secret values are write-only: the field never shows a value, not even the one just sent."""

    def format_value(self, value: Any) -> str | None:
        return None


REPOSITORY_FIELDS = [
    "name",
    "push_url",
    "default_branch",
    "sync_interval",
    "setup_script",
    "maintenance_script",
    "secrets",
    "credentials",
]


class RepositoryForm(forms.ModelForm):
    secrets = forms.CharField(
        required=False,
        widget=SecretsInput(attrs={"rows": 3, "autocomplete": "off", "spellcheck": "false"}),
    )
    credentials = forms.CharField(
        label="Fetch and push credentials",
        required=False,
        widget=SecretsInput(attrs={"rows": 2, "autocomplete": "off", "spellcheck": "false"}),
    )

    class Meta:
        model = Repository
        fields = REPOSITORY_FIELDS
        labels = {"push_url": "Push URL", "sync_interval": "Sync interval (seconds)"}
        help_texts = {
            "name": "Its jobs keep their history; the API, the CLI and MCP clients use the new "
            "name from then on.",
            "push_url": "Where merged results are pushed. Empty: they stay in AgentHub's copy.",
            "default_branch": "Jobs start from it unless they name another ref.",
            "setup_script": "Bash, run once per environment in the sandbox before the agent, "
            "with the package registries and the secrets below, in a fresh virtualenv "
            "(python and pip are its own), e.g. pip install -e '.[test]'. Its result is "
            "cached and reused until the script, the image or a manifest or lock file changes. "
            "Empty: detected from pyproject.toml, requirements*.txt or package.json.",
            "maintenance_script": "Bash, run in every attempt after the environment is ready, "
            "before the agent (the environment is read-only then).",
        }
        widgets = {
            "setup_script": forms.Textarea(attrs={"rows": 4, "spellcheck": "false"}),
            "maintenance_script": forms.Textarea(attrs={"rows": 2, "spellcheck": "false"}),
        }

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["secrets"].help_text = secrets_help(
            self.instance.secrets, "the setup and maintenance scripts (never the agent)"
        )
        kind = credentials_kind(self.instance.credentials)
        self.fields["credentials"].help_text = (f"Set now: {kind}. " if kind else "None set. ") + (
            'How AgentHub fetches the source and pushes merges: {"token": "...", "username": '
            '"..."} for HTTPS, or {"ssh_key": "-----BEGIN OPENSSH PRIVATE KEY-----..."}; {} '
            "removes them; empty keeps them. Encrypted at rest, never shown or logged."
        )

    def clean_secrets(self) -> Any:
        return parse_secrets(self.cleaned_data["secrets"], self.instance.secrets)

    def clean_credentials(self) -> Any:
        return parse_secrets(self.cleaned_data["credentials"], self.instance.credentials)

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


def credentials_kind(credentials: Any) -> str:
    """Which credentials a repository has, never what they are: "token", "ssh_key" or ""."""
    return git_auth.of(credentials).kind


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
        self.fields["secrets"].help_text = secrets_help(self.instance.secrets, "the agent")

    def clean_name(self) -> str:
        name = self.cleaned_data["name"]
        taken = Agent.objects.filter(team=self.team, name=name).exclude(pk=self.instance.pk)
        if taken.exists():
            raise ValidationError(f"Team {self.team.name} already has an agent named {name!r}.")
        return name

    def clean_secrets(self) -> Any:
        return parse_secrets(self.cleaned_data["secrets"], self.instance.secrets)


class TeamSettingsForm(forms.ModelForm):
    class Meta:
        model = Team
        fields = ["concurrency_limit"]
        labels = {"concurrency_limit": "Concurrent attempts"}
        help_texts = {
            "concurrency_limit": "How many of the team's attempts may run at once (1-100); "
            "the rest wait in the queue."
        }


SECRET_FIELDS = ("secrets", "credentials")


def as_posted(current: dict[str, Any], given: dict[str, Any]) -> dict[str, str]:
    """What a page's form would post for an API change: the current values with the given ones
    on top; secrets only when given (as the JSON the field reads)."""
    merged = {**current, **{k: v for k, v in given.items() if k not in SECRET_FIELDS}}
    data: dict[str, str] = {}
    for field, value in merged.items():
        if value is True:
            data[field] = "on"
        elif value not in (False, None):
            data[field] = str(value)
    for secret in ("secrets", "credentials"):
        if secret in given:
            data[secret] = json.dumps(given[secret])
    return data
