"""The team's agents over the API, for admins who keep agents as code:
`GET /api/v1/teams/<team>/agents` (any member: the team's agents and the presets it can use),
`GET` and `PUT /api/v1/teams/<team>/agents/<name>` (the team's admins and staff).

PUT validates exactly as the team's agent page does (jobs.team_forms.AgentForm: the model's
validators, bash syntax, the egress allowlist, secret names) and audits the same way. Secrets
are write-only: an agent shows the names of its secrets, never their values."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from django.db.models import Q
from ninja import Body, Router, Status

from jobs import access, schemas
from jobs.errors import BadInput, Forbidden, NotFound
from jobs.models import Agent, Role, Team
from jobs.team_forms import AGENT_FIELDS, AgentForm, as_posted
from jobs.teams import save_with_audit, values

router = Router(tags=["agents"])
WRITABLE = frozenset(AGENT_FIELDS)
ERRORS = {frozenset({400, 401, 403, 404, 429}): schemas.Error}


@router.get(
    "/{team}/agents",
    response={200: schemas.AgentList, **ERRORS},
    url_name="api-team-agents",
    summary="The team's agents and the presets it can use",
)
def list_agents(request: Any, team: str) -> Any:
    found = _team(request.auth, team, admin=False)
    agents = Agent.objects.filter(Q(team=found) | Q(team=None)).order_by("team_id", "name")
    own = {a.name for a in agents if a.team_id is not None}
    return {"agents": [agent_out(a) for a in agents if a.team_id is not None or a.name not in own]}


@router.get(
    "/{team}/agents/{name}",
    response={200: schemas.AgentOut, **ERRORS},
    url_name="api-team-agent",
    summary="One of the team's agents (team admins)",
)
def get_agent(request: Any, team: str, name: str) -> Any:
    found = _team(request.auth, team, admin=True)
    agent = Agent.objects.filter(team=found, name=name).first()
    if agent is None:
        raise NotFound(f"Team {found.name} has no agent {name!r} of its own.")
    return agent_out(agent)


@router.put(
    "/{team}/agents/{name}",
    response={200: schemas.AgentOut, 201: schemas.AgentOut, **ERRORS},
    url_name="api-team-agent",
    summary="Create or replace one of the team's agents (team admins)",
)
def put_agent(request: Any, team: str, name: str, body: Body[dict[str, Any]]) -> Any:
    found = _team(request.auth, team, admin=True)
    unknown = sorted(set(body) - WRITABLE - {"name"})
    if unknown:
        raise BadInput(f"Unknown field(s): {', '.join(unknown)}.", field=unknown[0])
    if body.get("name", name) != name:
        raise BadInput("The name in the body differs from the one in the URL.", field="name")
    agent = Agent.objects.filter(team=found, name=name).first()
    created = agent is None
    agent = agent or Agent(team=found, name=name)
    form = AgentForm(_form_data(agent, {**body, "name": name}), instance=agent, team=found)
    before = None if created else values(form)
    if not form.is_valid():
        field, problems = next(iter(form.errors.items()))
        raise BadInput(f"{field}: {' '.join(str(p) for p in problems)}", field=field)
    save_with_audit(request.auth, form, before)
    return Status(201 if created else 200, agent_out(form.instance))


def agent_out(agent: Agent) -> dict[str, Any]:
    return {
        "name": agent.name,
        "preset": agent.team_id is None,
        **{field: _plain(getattr(agent, field)) for field in AGENT_FIELDS if field != "secrets"},
        "secrets": sorted(agent.secrets or {}),  # names only
    }


def _form_data(agent: Agent, given: dict[str, Any]) -> dict[str, str]:
    current = {field: getattr(agent, field) for field in AGENT_FIELDS if field != "secrets"}
    return as_posted(current, given)


def _team(user: Any, name: str, *, admin: bool) -> Team:
    team = Team.objects.filter(name=name).first()
    member = access.membership(user, team) if team else None
    if team is None or (member is None and not user.is_staff):
        raise NotFound(f"No team {name!r} among yours.")
    if admin and not user.is_staff and member is not None and member.role != Role.ADMIN:
        raise Forbidden(f"Only team {team.name}'s admins may read or change its agents this way.")
    return team


def _plain(value: Any) -> Any:
    return float(value) if isinstance(value, Decimal) else value
