"""Team management in the Django admin: teams and their members, repositories and agents.

Repositories are registered with `manage.py add_repository` (it makes the store), so the admin
only edits what can change afterwards.
"""

from __future__ import annotations

from django.contrib import admin

from jobs.models import Agent, Membership, Repository, Team


class MembershipInline(admin.TabularInline):
    model = Membership
    extra = 1


@admin.register(Team)
class TeamAdmin(admin.ModelAdmin):
    list_display = ("name", "concurrency_limit", "created_at")
    inlines = [MembershipInline]


@admin.register(Repository)
class RepositoryAdmin(admin.ModelAdmin):
    list_display = ("name", "team", "default_branch", "source", "push_url")
    list_filter = ("team",)
    readonly_fields = ("team", "name", "source", "store_path", "default_branch", "created_at")

    def has_add_permission(self, request: object) -> bool:
        return False


@admin.register(Agent)
class AgentAdmin(admin.ModelAdmin):
    list_display = (
        "name",
        "team",
        "backend",
        "timeout_seconds",
        "required_approvals",
        "report_only",
    )
    list_filter = ("team", "backend", "report_only")
