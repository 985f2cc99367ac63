"""Team administration pages for team admins (and staff): jobs.teams."""

from django.urls import URLPattern, path

from gateway import team_views as credentials
from hooks import views as hooks
from jobs import teams

T = "teams/<str:team_name>/"

urlpatterns: list[URLPattern] = [
    path("teams/", teams.team_list, name="team-list"),
    path(T, teams.manage, name="team-manage"),
    path(T + "settings", teams.team_settings, name="team-settings"),
    path(T + "members/add", teams.member_add, name="team-member-add"),
    path(T + "members/<int:pk>/role", teams.member_role, name="team-member-role"),
    path(T + "members/<int:pk>/remove", teams.member_remove, name="team-member-remove"),
    path(
        T + "repositories/register",
        teams.repository_register,
        name="team-repository-register",
    ),
    path(T + "repositories/<str:name>/", teams.repository_edit, name="team-repository"),
    path(
        T + "repositories/<str:name>/environment/rebuild",
        teams.repository_rebuild,
        name="team-repository-rebuild",
    ),
    path(
        T + "repositories/<str:name>/delete",
        teams.repository_delete,
        name="team-repository-delete",
    ),
    path(T + "agents/new", teams.agent_edit, name="team-agent-new"),
    path(T + "agents/<str:name>/", teams.agent_edit, name="team-agent"),
    path(T + "agents/<str:name>/delete", teams.agent_delete, name="team-agent-delete"),
    path(T + "credentials", credentials.credential_set, name="team-credential-set"),
    path(
        T + "credentials/<str:provider>/delete",
        credentials.credential_delete,
        name="team-credential-delete",
    ),
    path(T + "webhooks/add", hooks.hook_add, name="team-hook-add"),
    path(T + "webhooks/<int:pk>/", hooks.hook_edit, name="team-hook"),
    path(
        T + "webhooks/<int:pk>/rotate-secret",
        hooks.hook_rotate_secret,
        name="team-hook-rotate-secret",
    ),
    path(T + "webhooks/<int:pk>/active", hooks.hook_active, name="team-hook-active"),
    path(T + "webhooks/<int:pk>/delete", hooks.hook_delete, name="team-hook-delete"),
    path(
        T + "webhooks/deliveries/<uuid:delivery_id>/redeliver",
        hooks.delivery_redeliver,
        name="team-hook-redeliver",
    ),
]
