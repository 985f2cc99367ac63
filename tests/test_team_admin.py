"""Team management pages (jobs.teams): a team admin manages the team's members, repositories,
agents and settings; every change is exactly one audit entry naming that admin. Outsiders get 404,
the team's members and reviewers 403, and nobody reaches another team's things."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings
from django.contrib.auth.models import User
from django.test import Client

from jobs import services, workspace
from jobs.builtin import BUILTIN_AGENTS
from jobs.errors import BadInput
from jobs.models import Agent, AuditEntry, Membership, Repository, Role, Team
from jobs.validation import command_problem
from tests.conftest import _member, shell_agent

pytestmark = pytest.mark.django_db

XSS = "<script>alert(1)</script>"
SECRET_VALUE = "s3cret-value-never-shown"


@pytest.fixture
def dana(team: Team) -> User:
    """The team admin of demo."""
    return _member("dana", team, Role.ADMIN)


@pytest.fixture
def admin(client: Client, dana: User) -> Client:
    client.force_login(dana)
    return client


def audit_mark() -> int:
    last = AuditEntry.objects.order_by("-pk").first()
    return last.pk if last else 0


def entries_since(mark: int) -> list[AuditEntry]:
    return list(AuditEntry.objects.filter(pk__gt=mark).order_by("pk"))


def one_entry_since(mark: int) -> AuditEntry:
    entries = entries_since(mark)
    assert len(entries) == 1, [str(e) for e in entries]
    return entries[0]


def agent_form(**values: Any) -> dict[str, Any]:
    """A complete agent form as a browser posts it (unchecked boxes are left out)."""
    data = {
        "name": "fixer",
        "description": "Fixes things",
        "command": 'bash "$AGENTHUB_PROMPT_FILE"',
        "backend": "",
        "image": "",
        "timeout_seconds": "60",
        "cpus": "1.0",
        "memory_mb": "1024",
        "max_processes": "64",
        "egress": "none",
        "egress_allowlist": "",
        "provider": "",
        "model": "",
        "output_format": "text",
        "required_approvals": "1",
        "retry_allowed": "on",
        "secrets": "",
    }
    data.update(values)
    return {k: v for k, v in data.items() if v is not None}


def page(response: Any) -> str:
    return response.content.decode()


# --- access ------------------------------------------------------------------------------------


def test_anonymous_visitors_are_sent_to_sign_in(client, team):
    for url in ("/teams/", "/teams/demo/", "/teams/demo/agents/new"):
        response = client.get(url)
        assert response.status_code == 302
        assert response["Location"].startswith("/accounts/login/")


def test_team_list_shows_the_teams_the_user_administers(admin, other_team):
    body = page(admin.get("/teams/"))
    assert 'href="/teams/demo/"' in body
    assert "acme" not in body


def test_team_list_tells_plain_members_they_manage_nothing(client, alice):
    client.force_login(alice)
    body = page(client.get("/teams/"))
    assert "not an admin of any team" in body and 'href="/teams/demo/"' not in body


def test_members_and_reviewers_are_refused_with_403(client, alice, bob, dana):
    for user in (alice, bob):
        client.force_login(user)
        response = client.get("/teams/demo/")
        assert response.status_code == 403
        assert f"You are a {Membership.objects.get(user=user).role} of team demo" in page(response)
        assert "dana" in page(response)  # whom to ask
        mark = audit_mark()
        response = client.post("/teams/demo/members/add", {"username": "bob", "role": "admin"})
        assert response.status_code == 403
        response = client.post("/teams/demo/settings", {"concurrency_limit": "50"})
        assert response.status_code == 403
        assert entries_since(mark) == []
    assert Membership.objects.get(user=bob).role == Role.REVIEWER
    assert Team.objects.get(name="demo").concurrency_limit == 2


def test_admin_of_demo_gets_404_on_acme_pages(admin, other_team, carol):
    acme_agent = shell_agent(other_team, name="acme-bot")
    for url in (
        "/teams/acme/",
        "/teams/acme/agents/new",
        "/teams/acme/agents/acme-bot/",
        "/teams/acme/agents/acme-bot/delete",
        "/teams/nosuchteam/",
    ):
        assert admin.get(url).status_code == 404, url
    mark = audit_mark()
    carols = Membership.objects.get(user=carol)
    posts = [
        ("/teams/acme/members/add", {"username": "dana", "role": "admin"}),
        (f"/teams/acme/members/{carols.pk}/remove", {}),
        ("/teams/acme/settings", {"concurrency_limit": "99"}),
        ("/teams/acme/agents/acme-bot/delete", {}),
        ("/teams/acme/agents/acme-bot/", agent_form(name="acme-bot", timeout_seconds="5")),
    ]
    for url, data in posts:
        assert admin.post(url, data).status_code == 404, url
    assert entries_since(mark) == []
    assert Membership.objects.filter(team=other_team).count() == 1
    acme_agent.refresh_from_db()
    assert acme_agent.timeout_seconds == 60
    assert Team.objects.get(name="acme").concurrency_limit == 2


def test_admin_of_demo_cannot_reach_acme_objects_through_demo_urls(admin, other_team, carol):
    shell_agent(other_team, name="acme-bot")
    carols = Membership.objects.get(user=carol)
    mark = audit_mark()
    for url, data in [
        (f"/teams/demo/members/{carols.pk}/remove", {}),
        (f"/teams/demo/members/{carols.pk}/role", {"role": "admin"}),
        ("/teams/demo/agents/acme-bot/delete", {}),
        ("/teams/demo/agents/acme-bot/", agent_form(name="acme-bot")),
    ]:
        assert admin.post(url, data).status_code == 404, url
    assert entries_since(mark) == []
    assert Membership.objects.get(pk=carols.pk).role == Role.MEMBER
    assert Agent.objects.filter(team=other_team, name="acme-bot").exists()


def test_staff_may_manage_every_team(client, other_team):
    staff = User.objects.create_user("root", "root@example.com", "pw", is_staff=True)
    client.force_login(staff)
    assert client.get("/teams/acme/").status_code == 200
    assert 'href="/teams/acme/"' in page(client.get("/teams/"))


def test_posts_need_the_csrf_token(dana, alice):
    browser = Client(enforce_csrf_checks=True)
    browser.force_login(dana)
    alices = Membership.objects.get(user=alice)
    response = browser.post(f"/teams/demo/members/{alices.pk}/remove")
    assert response.status_code == 403
    assert Membership.objects.filter(pk=alices.pk).exists()


def test_the_page_shows_people_and_agents_text_as_text(admin, team):
    shell_agent(team, name="xss", description=XSS)
    body = page(admin.get("/teams/demo/"))
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in body and XSS not in body


# --- members -----------------------------------------------------------------------------------


def test_admin_adds_a_member(admin, dana, carol):
    mark = audit_mark()
    response = admin.post(
        "/teams/demo/members/add", {"username": "carol", "role": "reviewer"}, follow=True
    )
    assert "Added carol as reviewer." in page(response)
    assert Membership.objects.get(team__name="demo", user=carol).role == Role.REVIEWER
    entry = one_entry_since(mark)
    assert (entry.actor, entry.action, entry.team.name) == (dana, "membership.create", "demo")
    assert entry.data["changes"] == {"role": [None, "reviewer"]}


def test_adding_an_unknown_user_names_them_and_changes_nothing(admin):
    mark = audit_mark()
    response = admin.post("/teams/demo/members/add", {"username": "zed", "role": "member"})
    assert response.status_code == 200
    assert response.context["add_member_form"].errors["username"]
    assert "Username: No user named &#x27;zed&#x27;." in page(response)
    assert entries_since(mark) == []
    assert not Membership.objects.filter(user__username="zed").exists()


def test_adding_someone_already_in_the_team_is_refused(admin, alice):
    mark = audit_mark()
    response = admin.post("/teams/demo/members/add", {"username": "alice", "role": "admin"})
    assert "alice is already a member of team demo" in page(response)
    assert Membership.objects.get(user=alice).role == Role.MEMBER
    assert entries_since(mark) == []


def test_admin_changes_a_role(admin, dana, alice):
    alices = Membership.objects.get(user=alice)
    mark = audit_mark()
    response = admin.post(
        f"/teams/demo/members/{alices.pk}/role", {"role": "reviewer"}, follow=True
    )
    assert "alice is now reviewer." in page(response)
    assert Membership.objects.get(pk=alices.pk).role == Role.REVIEWER
    entry = one_entry_since(mark)
    assert (entry.actor, entry.action) == (dana, "membership.update")
    assert entry.data["changes"] == {"role": ["member", "reviewer"]}


def test_choosing_the_same_role_writes_nothing(admin, alice):
    alices = Membership.objects.get(user=alice)
    mark = audit_mark()
    admin.post(f"/teams/demo/members/{alices.pk}/role", {"role": "member"})
    assert entries_since(mark) == []


def test_admin_removes_a_member(admin, dana, alice):
    alices = Membership.objects.get(user=alice)
    mark = audit_mark()
    response = admin.post(f"/teams/demo/members/{alices.pk}/remove", follow=True)
    assert "Removed alice from demo." in page(response)
    assert not Membership.objects.filter(pk=alices.pk).exists()
    assert User.objects.filter(username="alice").exists()  # the account stays
    entry = one_entry_since(mark)
    assert (entry.actor, entry.action, entry.target) == (dana, "membership.delete", str(alices))


def test_the_last_admin_can_be_neither_removed_nor_demoted(admin, dana):
    danas = Membership.objects.get(user=dana)
    mark = audit_mark()
    response = admin.post(f"/teams/demo/members/{danas.pk}/remove", follow=True)
    assert "Cannot remove dana: they are the last admin of team demo." in page(response)
    response = admin.post(f"/teams/demo/members/{danas.pk}/role", {"role": "member"}, follow=True)
    assert "Cannot demote dana: they are the last admin of team demo." in page(response)
    assert Membership.objects.get(pk=danas.pk).role == Role.ADMIN
    assert entries_since(mark) == []


def test_an_admin_may_step_down_while_another_admin_remains(admin, dana, bob):
    Membership.objects.filter(user=bob).update(role=Role.ADMIN)
    danas = Membership.objects.get(user=dana)
    mark = audit_mark()
    response = admin.post(f"/teams/demo/members/{danas.pk}/role", {"role": "reviewer"})
    assert response["Location"] == "/teams/"  # the page is no longer theirs to see
    assert Membership.objects.get(pk=danas.pk).role == Role.REVIEWER
    assert one_entry_since(mark).action == "membership.update"


# --- repositories ------------------------------------------------------------------------------


def edit_form(repo: Repository, **values: str) -> dict[str, str]:
    """The repository edit form as the browser posts it, unchanged but for `values`."""
    return {
        "name": repo.name,
        "push_url": repo.push_url,
        "default_branch": repo.default_branch,
        "sync_interval": str(repo.sync_interval),
        "setup_script": repo.setup_script,
        "maintenance_script": repo.maintenance_script,
        "secrets": "",  # write-only: an empty field keeps them
        **values,
    }


def test_admin_registers_a_repository(admin, dana, make_source):
    source = make_source("widgets")
    mark = audit_mark()
    response = admin.post(
        "/teams/demo/repositories/register",
        {"name": "widgets", "source": str(source), "push_url": ""},
        follow=True,
    )
    assert "Registered widgets (default branch main)." in page(response)
    repo = Repository.objects.get(team__name="demo", name="widgets")
    assert Path(repo.store_path, "HEAD").exists()
    entry = one_entry_since(mark)
    assert (entry.actor, entry.action, entry.target) == (dana, "repository.register", "widgets")


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("source", "/no/such/place", "Source: No such path: /no/such/place"),
        ("name", "Bad Name", "Name: Use 1-64 lowercase letters"),
        ("push_url", "-oProxyCommand=x", "Push URL: A push URL may not start with"),
        ("push_url", "/no/such/bare.git", "Push URL: No such directory: /no/such/bare.git."),
    ],
)
def test_repository_registration_errors_name_the_field(admin, make_source, field, value, message):
    form = {"name": "widgets", "source": str(make_source("widgets")), "push_url": ""}
    mark = audit_mark()
    response = admin.post("/teams/demo/repositories/register", {**form, field: value})
    assert response.status_code == 200
    assert response.context["register_form"].errors[field]
    assert message in page(response).replace("&#x27;", "'")
    assert not Repository.objects.exists()
    assert entries_since(mark) == []


def test_a_taken_repository_name_is_refused(admin, repo, make_source):
    source = make_source("other")
    response = admin.post(
        "/teams/demo/repositories/register", {"name": "demo", "source": str(source)}
    )
    assert "Team demo already has a repository named &#x27;demo&#x27;." in page(response)
    assert Repository.objects.count() == 1


def test_admin_edits_push_url_and_default_branch(admin, dana, repo, tmp_path):
    store = Path(repo.store_path)
    workspace.run_git(["branch", "develop", "main"], git_dir=store)
    upstream = tmp_path / "elsewhere.git"
    workspace.run_git(["init", "-q", "--bare", str(upstream)])
    old_push_url = repo.push_url
    mark = audit_mark()
    response = admin.post(
        "/teams/demo/repositories/demo/",
        edit_form(repo, push_url=str(upstream), default_branch="develop"),
        follow=True,
    )
    assert "Saved demo." in page(response)
    repo.refresh_from_db()
    assert (repo.push_url, repo.default_branch) == (str(upstream), "develop")
    entry = one_entry_since(mark)
    assert (entry.actor, entry.action) == (dana, "repository.update")
    assert entry.data["changes"] == {
        "default_branch": ["main", "develop"],
        "push_url": [old_push_url, str(upstream)],
    }


@pytest.mark.parametrize(
    ("branch", "message"),
    [
        ("nope", "Default branch: No branch 'nope' in demo; its branches are: main."),
        ("agenthub/job1/1", "Default branch: No branch 'agenthub/job1/1' in demo; its bra"),
        ("a..b", "Default branch: Invalid ref 'a..b': it contains '..'"),
    ],
)
def test_the_default_branch_must_exist_in_the_store(admin, repo, branch, message):
    # Attempts' result branches live in the store too, but are not the repository's own.
    workspace.run_git(["branch", "agenthub/job1/1", "main"], git_dir=Path(repo.store_path))
    mark = audit_mark()
    response = admin.post("/teams/demo/repositories/demo/", edit_form(repo, default_branch=branch))
    assert response.status_code == 200
    assert message in page(response).replace("&#x27;", "'")
    assert "<h1>Repository demo</h1>" in page(response)
    repo.refresh_from_db()
    assert repo.default_branch == "main"
    assert entries_since(mark) == []


def test_admin_renames_a_repository_and_its_jobs_follow(admin, dana, alice, repo):
    job = services.submit_job(alice, repo="demo", agent="shell", prompt="true")
    mark = audit_mark()
    response = admin.post("/teams/demo/repositories/demo/", edit_form(repo, name="gadgets"))
    assert response["Location"] == "/teams/demo/#repositories"
    assert "Saved gadgets (renamed from demo)." in page(admin.get("/teams/demo/"))
    repo.refresh_from_db()
    assert repo.name == "gadgets"
    job.refresh_from_db()
    assert job.repository_id == repo.pk  # the job's history stays with the renamed row
    entry = one_entry_since(mark)
    assert (entry.actor, entry.action, entry.target) == (dana, "repository.update", "demo/gadgets")
    assert entry.data["changes"] == {"name": ["demo", "gadgets"]}
    assert (
        services.submit_job(alice, repo="gadgets", agent="shell", prompt="true").repository == repo
    )
    with pytest.raises(BadInput, match="Unknown repository 'demo' in your teams.") as refused:
        services.submit_job(alice, repo="demo", agent="shell", prompt="true")
    assert refused.value.field == "repo"
    assert admin.get("/teams/demo/repositories/demo/").status_code == 404


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("other", "Name: Team demo already has a repository named 'other'."),
        ("Bad Name", "Name: Use 1-64 lowercase letters"),
        (XSS, "Name: Use 1-64 lowercase letters"),
        ("", "Name: This field is required."),
    ],
)
def test_a_rename_to_a_taken_or_invalid_name_is_refused(admin, repo, make_source, name, message):
    services.register_repository("tests", repo.team, "other", str(make_source("other")))
    mark = audit_mark()
    response = admin.post("/teams/demo/repositories/demo/", edit_form(repo, name=name))
    assert response.status_code == 200
    body = page(response)
    assert message in body.replace("&#x27;", "'")
    assert "Nothing was saved" in body and "<h1>Repository demo</h1>" in body
    assert XSS not in body
    assert sorted(Repository.objects.values_list("name", flat=True)) == ["demo", "other"]
    assert entries_since(mark) == []


def test_admin_deletes_a_repository_and_its_store(admin, dana, team, repo):
    store, source, upstream = Path(repo.store_path), Path(repo.source), Path(repo.push_url)
    confirm = page(admin.get("/teams/demo/repositories/demo/delete"))
    assert "Delete repository demo?" in confirm
    assert f"AgentHub's copy of it is removed from disk: <code>{store}</code>" in confirm
    assert f"Not touched: its source <code>{source}</code>" in confirm
    mark = audit_mark()
    response = admin.post("/teams/demo/repositories/demo/delete", follow=True)
    assert "Deleted repository demo and AgentHub&#x27;s copy of it." in page(response)
    assert not Repository.objects.filter(pk=repo.pk).exists()
    assert not store.exists()
    assert Path(source, ".git").is_dir() and Path(upstream, "HEAD").is_file()
    entry = one_entry_since(mark)
    assert (entry.actor, entry.action, entry.target) == (dana, "repository.delete", "demo/demo")
    assert entry.team == team
    assert entry.data == {"store": str(store), "remove_store": True}


def test_a_repository_with_jobs_cannot_be_deleted(admin, alice, repo):
    services.submit_job(alice, repo="demo", agent="shell", prompt="true")
    confirm = page(admin.get("/teams/demo/repositories/demo/delete"))
    assert "its 1 job keep it in their history. Rename it instead." in confirm
    assert ">Delete</button>" not in confirm
    mark = audit_mark()
    response = admin.post("/teams/demo/repositories/demo/delete", follow=True)
    assert response.redirect_chain[-1][0] == "/teams/demo/repositories/demo/"
    assert "Repository demo cannot be deleted: its 1 job(s) keep it in their history." in page(
        response
    )
    assert Repository.objects.filter(pk=repo.pk).exists()
    assert Path(repo.store_path, "HEAD").is_file()
    assert entries_since(mark) == []


@pytest.mark.parametrize("how", ["outside", "symlink", "data_dir"])
def test_a_store_outside_the_stores_is_left_on_disk(admin, dana, repo, tmp_path, how):
    # tmp_path is outside AGENTHUB_DATA_DIR; a symlink inside the stores must not lead the delete
    # out; and of the data dir, only the stores are a repository's to remove.
    elsewhere = tmp_path / "elsewhere.git"
    if how == "data_dir":
        elsewhere = Path(settings.AGENTHUB_DATA_DIR) / f"not-a-store-{tmp_path.name}.git"
    workspace.run_git(["clone", "-q", "--bare", repo.store_path, str(elsewhere)])
    store = elsewhere
    if how == "symlink":
        store = Path(repo.store_path + "-link")
        store.symlink_to(elsewhere)
    Repository.objects.filter(pk=repo.pk).update(store_path=str(store))
    assert "is not inside AgentHub's stores" in page(
        admin.get("/teams/demo/repositories/demo/delete")
    )
    mark = audit_mark()
    body = page(admin.post("/teams/demo/repositories/demo/delete", follow=True))
    assert f"Deleted repository demo. Its store {store}" in body
    assert "was left on disk: it is not inside AgentHub&#x27;s stores" in body
    assert not Repository.objects.filter(pk=repo.pk).exists()
    assert Path(elsewhere, "HEAD").is_file() and store.exists()
    entry = one_entry_since(mark)
    assert (entry.actor, entry.action) == (dana, "repository.delete")
    assert entry.data == {"store": str(store), "remove_store": False}
    if how == "symlink":
        store.unlink()
    if how == "data_dir":
        shutil.rmtree(elsewhere)


def test_members_and_reviewers_cannot_rename_or_delete_a_repository(client, alice, bob, repo):
    for user in (alice, bob):
        client.force_login(user)
        mark = audit_mark()
        for url in ("/teams/demo/repositories/demo/", "/teams/demo/repositories/demo/delete"):
            assert client.get(url).status_code == 403, url
        response = client.post("/teams/demo/repositories/demo/", edit_form(repo, name="mine"))
        assert response.status_code == 403
        assert client.post("/teams/demo/repositories/demo/delete").status_code == 403
        assert entries_since(mark) == []
    repo.refresh_from_db()
    assert repo.name == "demo" and Path(repo.store_path, "HEAD").is_file()


def test_another_teams_repository_is_not_found(admin, other_team, repo, make_source):
    acme = services.register_repository("tests", other_team, "widgets", str(make_source("w")))
    mark = audit_mark()
    for team_name in ("acme", "demo"):  # acme's own URLs, and acme's repository under demo's
        base = f"/teams/{team_name}/repositories/widgets/"
        assert admin.get(base).status_code == 404
        assert admin.get(base + "delete").status_code == 404
        assert admin.post(base, edit_form(acme, name="mine")).status_code == 404
        assert admin.post(base + "delete").status_code == 404
    assert entries_since(mark) == []
    acme.refresh_from_db()
    assert acme.name == "widgets" and Path(acme.store_path, "HEAD").is_file()


def test_staff_may_rename_and_delete_any_teams_repository(client, other_team, make_source):
    acme = services.register_repository("tests", other_team, "widgets", str(make_source("w")))
    client.force_login(User.objects.create_user("root", "root@example.com", "pw", is_staff=True))
    client.post("/teams/acme/repositories/widgets/", edit_form(acme, name="gizmos"))
    assert Repository.objects.get(pk=acme.pk).name == "gizmos"
    client.post("/teams/acme/repositories/gizmos/delete")
    assert not Repository.objects.filter(pk=acme.pk).exists()
    assert not Path(acme.store_path).exists()


def test_renaming_and_deleting_need_the_csrf_token(dana, repo):
    browser = Client(enforce_csrf_checks=True)
    browser.force_login(dana)
    mark = audit_mark()
    response = browser.post("/teams/demo/repositories/demo/", edit_form(repo, name="gadgets"))
    assert response.status_code == 403
    assert browser.post("/teams/demo/repositories/demo/delete").status_code == 403
    assert entries_since(mark) == []
    repo.refresh_from_db()
    assert repo.name == "demo" and Path(repo.store_path, "HEAD").is_file()


def test_repository_pages_refuse_other_methods_with_405(admin, repo):
    for url in ("/teams/demo/repositories/demo/", "/teams/demo/repositories/demo/delete"):
        assert admin.put(url).status_code == 405, url
        assert admin.delete(url).status_code == 405, url
    assert admin.get("/teams/demo/repositories/register").status_code == 405
    assert Repository.objects.filter(pk=repo.pk).exists()


# --- agents ------------------------------------------------------------------------------------


def test_a_wrong_egress_allowlist_line_is_named_on_the_form(admin, team):
    response = admin.post(
        "/teams/demo/agents/new",
        agent_form(egress="allowlist", egress_allowlist="pypi.org\nFETCH example.com"),
    )
    assert "line 2: unknown method FETCH" in page(response)
    assert not Agent.objects.filter(team=team, name="fixer").exists()


def test_admin_creates_an_agent(admin, dana, team):
    mark = audit_mark()
    secrets = json.dumps({"API_KEY": SECRET_VALUE})
    response = admin.post(
        "/teams/demo/agents/new",
        agent_form(
            secrets=secrets,
            required_approvals="2",
            egress="allowlist",
            egress_allowlist="registries\nGET example.com:80",
        ),
        follow=True,
    )
    assert "Created agent fixer." in page(response)
    agent = Agent.objects.get(team=team, name="fixer")
    assert (agent.required_approvals, agent.egress, agent.timeout_seconds) == (2, "allowlist", 60)
    assert agent.egress_allowlist == "registries\nGET example.com:80"
    assert agent.secrets == {"API_KEY": SECRET_VALUE}
    entry = one_entry_since(mark)
    assert (entry.actor, entry.action, entry.target) == (dana, "agent.create", "fixer")
    assert entry.data["changes"]["secrets"] == [[], ["API_KEY"]]
    assert entry.data["changes"]["required_approvals"] == [None, 2]
    assert entry.data["changes"]["egress"] == [None, "allowlist"]
    assert SECRET_VALUE not in json.dumps(entry.data)
    assert SECRET_VALUE not in page(response) and "API_KEY" in page(response)


def test_admin_edits_an_agent_and_keeps_its_secrets(admin, dana, team):
    agent = shell_agent(team, name="fixer", secrets={"API_KEY": SECRET_VALUE})
    mark = audit_mark()
    response = admin.post(
        "/teams/demo/agents/fixer/",
        agent_form(timeout_seconds="120", required_approvals="3", command=agent.command),
        follow=True,
    )
    assert "Saved agent fixer." in page(response)
    agent.refresh_from_db()
    assert (agent.timeout_seconds, agent.required_approvals) == (120, 3)
    assert agent.secrets == {"API_KEY": SECRET_VALUE}
    entry = one_entry_since(mark)
    assert (entry.actor, entry.action) == (dana, "agent.update")
    assert entry.data["changes"] == {
        "description": ["", "Fixes things"],
        "required_approvals": [1, 3],
        "timeout_seconds": [60, 120],
    }


def test_admin_sets_a_silent_merge_policy(admin, dana, team):
    agent = shell_agent(team, name="fixer", description="Fixes things")
    mark = audit_mark()
    response = admin.post(
        "/teams/demo/agents/fixer/",
        agent_form(command=agent.command, silent_merge="docs/**\r\n*.md\r\n"),
        follow=True,
    )
    assert "Saved agent fixer." in page(response)
    agent.refresh_from_db()
    assert agent.silent_merge_patterns == ["docs/**", "*.md"]
    entry = one_entry_since(mark)
    assert (entry.actor, entry.action) == (dana, "agent.update")
    assert list(entry.data["changes"]) == ["silent_merge"]
    # The team page says which paths skip review.
    assert "unreviewed: <code>docs/**</code>, <code>*.md</code>" in page(admin.get("/teams/demo/"))


def test_replacing_an_agents_secrets_audits_their_names_only(admin, team):
    shell_agent(team, name="fixer", secrets={"OLD_KEY": "old-value"})
    mark = audit_mark()
    admin.post(
        "/teams/demo/agents/fixer/",
        agent_form(description="", secrets=json.dumps({"NEW_KEY": SECRET_VALUE})),
    )
    assert Agent.objects.get(name="fixer").secrets == {"NEW_KEY": SECRET_VALUE}
    entry = one_entry_since(mark)
    assert entry.data["changes"] == {"secrets": [["OLD_KEY"], ["NEW_KEY"]]}
    assert "value" not in json.dumps(entry.data)


def test_the_agent_page_never_shows_secret_values(admin, team):
    shell_agent(team, name="fixer", secrets={"API_KEY": SECRET_VALUE})
    body = page(admin.get("/teams/demo/agents/fixer/"))
    assert "Set now: API_KEY." in body and SECRET_VALUE not in body
    assert "API_KEY" in page(admin.get("/teams/demo/"))
    assert SECRET_VALUE not in page(admin.get("/teams/demo/"))
    # Not even the value just typed comes back when another field is wrong.
    response = admin.post(
        "/teams/demo/agents/fixer/",
        agent_form(timeout_seconds="0", secrets=json.dumps({"API_KEY": "typed-" + SECRET_VALUE})),
    )
    assert response.context["form"].errors and SECRET_VALUE not in page(response)


def test_saving_an_unchanged_agent_writes_no_entry(admin, team):
    agent = shell_agent(team, name="fixer", description="Fixes things")
    mark = audit_mark()
    response = admin.post(
        "/teams/demo/agents/fixer/", agent_form(command=agent.command), follow=True
    )
    assert "Nothing changed." in page(response)
    assert entries_since(mark) == []


INVALID_AGENTS = [
    ("timeout_seconds", "0", "Ensure this value is greater than or equal to 1."),
    ("timeout_seconds", "999999", "Ensure this value is less than or equal to 86400."),
    ("image", "Not An Image!!", "is not an image name"),
    ("command", "if then fi (", "The command is not a valid bash script"),
    ("secrets", "[1, 2]", "Write a JSON object"),
    ("secrets", "{nope", "Not valid JSON"),
    ("secrets", '{"NOT A NAME": "x"}', "Not an environment variable name"),
    ("name", "shell agent", "Use 1-64 lowercase letters"),
    ("silent_merge", "docs/**\n**", "Line 2: '**' would match every path"),
]
LABELS = {
    "timeout_seconds": "Timeout (seconds)",
    "image": "Image",
    "command": "Command",
    "secrets": "Secrets",
    "name": "Name",
    "silent_merge": "Merge without review when only these paths change",
}


@pytest.mark.parametrize(("field", "value", "message"), INVALID_AGENTS)
def test_agent_errors_name_the_field_and_create_nothing(admin, field, value, message):
    mark = audit_mark()
    response = admin.post("/teams/demo/agents/new", agent_form(**{field: value}))
    assert response.status_code == 200
    errors = response.context["form"].errors
    assert list(errors) == [field] and message in " ".join(errors[field])
    body = page(response).replace("&#x27;", "'").replace("&quot;", '"')
    assert f"{LABELS[field]}: " in body and message in body
    assert "Nothing was saved" in body
    assert not Agent.objects.filter(name="fixer").exists()
    assert entries_since(mark) == []


@pytest.mark.parametrize(("field", "value", "message"), INVALID_AGENTS)
def test_agent_errors_leave_the_agent_unchanged(admin, team, field, value, message):
    agent = shell_agent(team, name="fixer", secrets={"API_KEY": SECRET_VALUE})
    before = {f.name: getattr(agent, f.name) for f in Agent._meta.fields}
    mark = audit_mark()
    response = admin.post("/teams/demo/agents/fixer/", agent_form(**{field: value}))
    assert message in " ".join(response.context["form"].errors[field])
    assert "<h1>Agent fixer</h1>" in page(response)  # the heading keeps the saved name
    agent.refresh_from_db()
    assert {f.name: getattr(agent, f.name) for f in Agent._meta.fields} == before
    assert entries_since(mark) == []


def test_two_team_agents_cannot_share_a_name(admin, team):
    shell_agent(team, name="fixer")
    response = admin.post("/teams/demo/agents/new", agent_form(name="fixer"))
    assert "Team demo already has an agent named &#x27;fixer&#x27;." in page(response)
    assert Agent.objects.filter(team=team, name="fixer").count() == 1


def test_admin_deletes_an_agent(admin, dana, team):
    shell_agent(team, name="fixer")
    assert "Delete agent fixer?" in page(admin.get("/teams/demo/agents/fixer/delete"))
    mark = audit_mark()
    response = admin.post("/teams/demo/agents/fixer/delete", follow=True)
    assert "Deleted agent fixer." in page(response)
    assert not Agent.objects.filter(name="fixer").exists()
    entry = one_entry_since(mark)
    assert (entry.actor, entry.action, entry.target) == (dana, "agent.delete", "fixer")
    assert entry.team == team


def test_an_agent_with_jobs_cannot_be_deleted(admin, team, alice, repo):
    shell_agent(team, name="fixer")
    services.submit_job(alice, repo="demo", agent="fixer", prompt="true")
    assert "1 job keep it" in page(admin.get("/teams/demo/agents/fixer/delete"))
    mark = audit_mark()
    response = admin.post("/teams/demo/agents/fixer/delete", follow=True)
    assert "Agent fixer cannot be deleted: its 1 job(s) keep it in their history." in page(response)
    assert Agent.objects.filter(team=team, name="fixer").exists()
    assert entries_since(mark) == []


def test_built_in_agents_are_shown_but_read_only(admin, team):
    body = page(admin.get("/teams/demo/"))
    assert 'shell <span class="chip">built-in</span>' in body
    assert "/teams/demo/agents/shell/" not in body
    assert admin.get("/teams/demo/agents/shell/").status_code == 404
    assert admin.post("/teams/demo/agents/shell/delete").status_code == 404
    assert Agent.objects.filter(team=None, name="shell").exists()


# --- settings ----------------------------------------------------------------------------------


def test_admin_changes_the_concurrency_limit(admin, dana, team):
    mark = audit_mark()
    response = admin.post("/teams/demo/settings", {"concurrency_limit": "5"}, follow=True)
    assert "Saved the team&#x27;s settings." in page(response)
    team.refresh_from_db()
    assert team.concurrency_limit == 5
    entry = one_entry_since(mark)
    assert (entry.actor, entry.action, entry.target) == (dana, "team.update", "demo")
    assert entry.data["changes"] == {"concurrency_limit": [2, 5]}


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("0", "Ensure this value is greater than or equal to 1."),
        ("101", "Ensure this value is less than or equal to 100."),
        ("many", "Enter a whole number."),
    ],
)
def test_concurrency_limit_errors_name_the_field(admin, team, value, message):
    mark = audit_mark()
    response = admin.post("/teams/demo/settings", {"concurrency_limit": value})
    assert response.status_code == 200
    assert f"Concurrent attempts: {message}" in page(response)
    team.refresh_from_db()
    assert team.concurrency_limit == 2
    assert entries_since(mark) == []


def test_a_new_agent_can_start_from_a_preset(admin):
    manage = page(admin.get("/teams/demo/"))
    assert 'href="/teams/demo/agents/new?from=codex"' in manage
    response = admin.get("/teams/demo/agents/new?from=codex")
    form = response.context["form"]
    preset = Agent.objects.get(team=None, name="codex")
    assert form["name"].value() == "codex"
    assert form["command"].value() == preset.command
    assert (form["provider"].value(), form["model"].value()) == ("openai", preset.model)
    assert form["output_format"].value() == "codex-json"
    # A self-hosted model: the same CLI, another provider and model, under a name of its own.
    data = agent_form(
        name="codex-local",
        command=preset.command,
        provider="openai-compatible",
        model="qwen3-coder:30b",
        output_format="codex-json",
    )
    answer = admin.post("/teams/demo/agents/new?from=codex", data)
    assert answer.status_code == 302, answer.context["form"].errors
    made = Agent.objects.get(team__name="demo", name="codex-local")
    assert (made.provider, made.model, made.command) == (
        "openai-compatible",
        "qwen3-coder:30b",
        preset.command.strip(),  # the form strips the closing newline
    )
    # Unknown names and edits of existing agents take nothing from a preset.
    assert page(admin.get("/teams/demo/agents/new?from=nosuch")).count("codex exec") == 0


@pytest.mark.parametrize("name", list(BUILTIN_AGENTS))
def test_every_presets_command_is_one_a_team_agent_may_have(name):
    assert command_problem(BUILTIN_AGENTS[name]["command"]) == ""
