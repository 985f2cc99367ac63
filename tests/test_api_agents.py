"""The team's agents over the API: every member lists them (presets included), admins read and
keep them as code with PUT, validated and audited as on the agent page, secrets write-only."""

from __future__ import annotations

import pytest

from jobs.models import Agent, AuditEntry, Role, Team
from tests.conftest import _member

SECRET = "value-of-a-secret-4711"


@pytest.fixture
def dana(team: Team):
    return _member("dana", team, Role.ADMIN)


def test_every_member_lists_the_teams_agents_with_the_presets_it_does_not_shadow(api, alice, team):
    Agent.objects.create(team=team, name="shell", command='bash -x "$AGENTHUB_PROMPT_FILE"')
    answer = api(alice).get("/api/v1/teams/demo/agents")
    assert answer.status_code == 200, answer.content
    agents = {a["name"]: a for a in answer.json()["agents"]}
    assert {"shell", "claude-code", "pytest", "ruff-fix", "security-scan"} <= set(agents)
    assert agents["shell"]["preset"] is False  # the team's own wins over the preset
    assert agents["claude-code"]["preset"] is True
    assert agents["claude-code"]["provider"] == "anthropic"
    assert agents["claude-code"]["egress"] == "none"


def test_outsiders_get_404_and_members_may_not_read_or_write_one(api, alice, carol, team):
    assert api(carol).get("/api/v1/teams/demo/agents").status_code == 404
    assert api(alice).get("/api/v1/teams/demo/agents/shell").status_code == 403
    refused = api(alice).put("/api/v1/teams/demo/agents/fixer", {"command": "true"})
    assert refused.status_code == 403 and "admins" in refused.json()["detail"]


def test_an_admin_keeps_an_agent_as_code(api, dana, team):
    body = {
        "description": "Fixes things",
        "command": 'bash "$AGENTHUB_PROMPT_FILE"',
        "egress": "allowlist",
        "egress_allowlist": "registries",
        "budget_requests": 20,
        "secrets": {"API_KEY": SECRET},
    }
    created = api(dana).put("/api/v1/teams/demo/agents/fixer", body)
    assert created.status_code == 201, created.content
    assert created.json()["secrets"] == ["API_KEY"] and SECRET not in created.content.decode()
    assert created.json()["budget_requests"] == 20
    agent = Agent.objects.get(team=team, name="fixer")
    assert agent.secrets == {"API_KEY": SECRET} and agent.egress == "allowlist"

    updated = api(dana).put("/api/v1/teams/demo/agents/fixer", {"timeout_seconds": 120})
    assert updated.status_code == 200, updated.content
    agent.refresh_from_db()
    assert (agent.timeout_seconds, agent.egress, agent.secrets) == (
        120,
        "allowlist",
        {"API_KEY": SECRET},
    )
    assert api(dana).get("/api/v1/teams/demo/agents/fixer").json()["timeout_seconds"] == 120

    entries = AuditEntry.objects.filter(action__startswith="agent.", target="fixer").order_by("seq")
    assert [e.action for e in entries] == ["agent.create", "agent.update"]
    assert entries[1].data["changes"] == {"timeout_seconds": [1800, 120]}
    assert SECRET not in str([e.data for e in entries])


@pytest.mark.parametrize(
    ("body", "field", "says"),
    [
        ({"command": "if then fi"}, "command", "command"),
        (
            {"command": "true", "egress": "allowlist", "egress_allowlist": "FETCH x"},
            "egress_allowlist",
            "unknown method FETCH",
        ),
        ({"command": "true", "colour": "red"}, "colour", "Unknown field(s): colour"),
        ({"command": "true", "name": "other"}, "name", "differs"),
    ],
)
def test_a_wrong_agent_is_refused_naming_the_field_and_nothing_is_saved(
    api, dana, team, body, field, says
):
    answer = api(dana).put("/api/v1/teams/demo/agents/fixer", body)
    assert answer.status_code == 400, answer.content
    assert answer.json()["field"] == field and says in answer.json()["detail"]
    assert not Agent.objects.filter(team=team, name="fixer").exists()
