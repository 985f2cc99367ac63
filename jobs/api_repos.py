"""A repository's settings over the API, for its team's admins (and staff):
`GET` and `PATCH /api/v1/repos/<name>` (its environment's scripts, push URL, sync interval,
write-only secrets, write-only fetch and push credentials) and
`POST /api/v1/repos/<name>/environment/rebuild`. `<name>` is as in a submit; `?team=` picks one
when several of your teams have a repository of that name.

PATCH validates exactly as the repository's page does (jobs.team_forms.RepositoryForm) and
audits the same way. Secrets show by name only, credentials by kind; URLs with their
credentials redacted."""

from __future__ import annotations

from typing import Any

from ninja import Body, Router, Status

from jobs import access, environments, schemas, services, workspace
from jobs.errors import BadInput, Forbidden
from jobs.models import Repository, Role
from jobs.team_forms import (
    REPOSITORY_FIELDS,
    SECRET_FIELDS,
    RepositoryForm,
    as_posted,
    credentials_kind,
)
from jobs.teams import save_with_audit, values

router = Router(tags=["repositories"])
WRITABLE = frozenset(REPOSITORY_FIELDS) - {"name"}
ERRORS = {frozenset({400, 401, 403, 404, 429}): schemas.Error}


@router.get(
    "/{name}",
    response={200: schemas.RepositoryOut, **ERRORS},
    url_name="api-repo",
    summary="A repository's settings and environment (its team's admins)",
)
def get_repo(request: Any, name: str, team: str = "") -> Any:
    return repo_out(_administered(request.auth, name, team))


@router.patch(
    "/{name}",
    response={200: schemas.RepositoryOut, **ERRORS},
    url_name="api-repo",
    summary="Change a repository's settings (its team's admins); secrets are write-only",
)
def patch_repo(request: Any, name: str, body: Body[dict[str, Any]], team: str = "") -> Any:
    repository = _administered(request.auth, name, team)
    unknown = sorted(set(body) - WRITABLE)
    if unknown:
        writable = ", ".join(sorted(WRITABLE))
        raise BadInput(
            f"Unknown field(s): {', '.join(unknown)}; writable: {writable}.", field=unknown[0]
        )
    current = {f: getattr(repository, f) for f in REPOSITORY_FIELDS if f not in SECRET_FIELDS}
    form = RepositoryForm(as_posted(current, body), instance=repository)
    before = values(form)
    if not form.is_valid():
        field, problems = next(iter(form.errors.items()))
        raise BadInput(f"{field}: {' '.join(str(p) for p in problems)}", field=field)
    save_with_audit(request.auth, form, before)
    return repo_out(Repository.objects.get(pk=repository.pk))


@router.post(
    "/{name}/environment/rebuild",
    response={202: schemas.RepositoryOut, **ERRORS},
    url_name="api-repo-rebuild",
    summary="Set the repository's environment up afresh in its next attempt (its team's admins)",
)
def rebuild(request: Any, name: str, team: str = "") -> Any:
    repository = services.rebuild_environment(request.auth, _administered(request.auth, name, team))
    return Status(202, repo_out(repository))


def repo_out(repository: Repository) -> dict[str, Any]:
    return {
        "name": repository.name,
        "team": repository.team.name,
        "source": workspace.redacted(repository.source),
        "push_url": workspace.redacted(repository.push_url),
        "default_branch": repository.default_branch,
        "sync_interval": repository.sync_interval,
        "last_synced_at": (
            repository.last_synced_at.isoformat() if repository.last_synced_at else None
        ),
        "sync_error": repository.sync_error,
        "setup_script": repository.setup_script,
        "maintenance_script": repository.maintenance_script,
        "secrets": sorted(repository.secrets or {}),  # names only
        "credentials": credentials_kind(repository.credentials) or None,  # the kind only
        "environment_generation": repository.environment_generation,
        "environment_path": environments.ENV_PATH,
    }


def _administered(user: Any, name: str, team: str) -> Repository:
    repository = services.find_repository(user, f"{team}/{name}" if team else name)
    member = access.membership(user, repository.team)
    if not user.is_staff and (member is None or member.role != Role.ADMIN):
        raise Forbidden(
            f"Only team {repository.team.name}'s admins may read or change its repositories."
        )
    return repository
