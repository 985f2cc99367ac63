from __future__ import annotations

import pytest

from jobs import services

pytestmark = pytest.mark.django_db


def test_home_lists_the_teams_jobs_as_text_never_html(client, alice, repo):
    services.submit_job(
        alice, repo="demo", agent="shell", prompt="true", title="<script>alert(1)</script>"
    )
    client.force_login(alice)
    page = client.get("/").content.decode()
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "<script>alert(1)" not in page


def test_home_hides_other_teams_jobs(client, alice, carol, repo):
    services.submit_job(
        alice, repo="demo", agent="shell", prompt="true", title="alice's secret plan"
    )
    client.force_login(carol)
    assert "secret plan" not in client.get("/").content.decode()


def test_home_invites_anonymous_visitors_to_sign_in(client):
    assert "sign in" in client.get("/").content.decode()


def test_staff_can_manage_teams_and_members_in_the_admin(admin_client, team):
    page = admin_client.get(f"/admin/jobs/team/{team.pk}/change/")
    assert page.status_code == 200
    assert "Memberships" in page.content.decode() or "membership" in page.content.decode()


def test_repositories_are_added_by_command_not_the_admin(admin_client):
    assert admin_client.get("/admin/jobs/repository/add/").status_code == 403
