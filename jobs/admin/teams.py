"""Team management in the admin, for staff: teams and their members, repositories and agents.

Every change made here writes exactly one audit entry per changed object, naming the staff user
who made it (services.audit_change); a form saved without changes writes none. Repositories are
registered with `manage.py add_repository` (it makes the store), so the admin only edits what
can change afterwards.
"""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin
from django.db.models import Model, QuerySet
from django.forms.models import BaseInlineFormSet
from django.http import HttpRequest

from jobs import services
from jobs.models import Agent, Membership, Repository, Team

Changes = dict[str, tuple[Any, Any]]


def form_changes(form: forms.ModelForm[Any], *, created: bool, skip: set[str]) -> Changes:
    """{field: (old, new)}: every field of a new object, the changed fields of an existing one."""
    if created:
        names = [name for name in form.cleaned_data if name not in skip]
        return {name: (None, form.cleaned_data[name]) for name in names}
    return {name: (_initial(form, name), form.cleaned_data.get(name)) for name in form.changed_data}


def _initial(form: forms.ModelForm[Any], name: str) -> Any:
    """The value before the change; a related object by its name rather than its id."""
    value = form.initial.get(name)
    field = form.fields.get(name)
    if (
        isinstance(field, forms.ModelChoiceField)
        and field.queryset is not None
        and value is not None
    ):
        return field.queryset.filter(pk=value).first() or value
    return value


class StaffOnly:
    """Site admins are Django staff (PRODUCT.md, roles): they may manage every team."""

    def has_view_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return request.user.is_active and request.user.is_staff

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return self.has_view_permission(request)

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return self.has_view_permission(request)

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return self.has_view_permission(request)


class AuditedAdmin(StaffOnly, admin.ModelAdmin):
    def save_model(self, request: HttpRequest, obj: Any, form: Any, change: bool) -> None:
        super().save_model(request, obj, form, change)
        if not change or form.has_changed():
            changes = form_changes(form, created=not change, skip={obj._meta.pk.name})
            services.audit_change(
                request.user, "update" if change else "create", obj, changes=changes
            )

    def delete_model(self, request: HttpRequest, obj: Any) -> None:
        services.audit_change(request.user, "delete", obj)
        super().delete_model(request, obj)

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> None:
        for obj in queryset:
            services.audit_change(request.user, "delete", obj)
        super().delete_queryset(request, queryset)

    def save_formset(
        self,
        request: HttpRequest,
        form: Any,
        formset: BaseInlineFormSet[Any, Any, Any],
        change: bool,
    ) -> None:
        """Inline rows (a team's memberships): one entry per row added, changed or deleted."""
        skip = {"id", "DELETE", formset.fk.name}
        entries: list[tuple[str, Model, Changes | None]] = []
        for inline in formset.forms:
            if inline in formset.deleted_forms:
                if inline.instance.pk is not None:
                    entries.append(("delete", inline.instance, None))
            elif inline.has_changed():
                created = inline.instance._state.adding
                changes = form_changes(inline, created=created, skip=skip)
                entries.append(("create" if created else "update", inline.instance, changes))
        super().save_formset(request, form, formset, change)
        for verb, obj, changed in entries:
            services.audit_change(request.user, verb, obj, changes=changed)


class MembershipInline(StaffOnly, admin.TabularInline):
    model = Membership
    extra = 1


@admin.register(Team)
class TeamAdmin(AuditedAdmin):
    list_display = ("name", "concurrency_limit", "created_at")
    search_fields = ("name",)
    # Read-only: the form would post it back without microseconds, a change on every save.
    readonly_fields = ("created_at",)
    inlines = [MembershipInline]

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        # A team's audit entries protect it (AuditEntry.team is PROTECT), and deleting it here
        # would first write one more: a team with a history is kept, its members removed instead.
        return False


@admin.register(Repository)
class RepositoryAdmin(AuditedAdmin):
    list_display = ("name", "team", "default_branch", "source", "push_url")
    list_filter = ("team",)
    readonly_fields = ("team", "name", "source", "store_path", "default_branch", "created_at")

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(Agent)
class AgentAdmin(AuditedAdmin):
    list_display = (
        "name",
        "team",
        "backend",
        "timeout_seconds",
        "required_approvals",
        "report_only",
    )
    list_filter = ("team", "backend", "report_only")
    search_fields = ("name", "description")
    readonly_fields = ("created_at",)
    exclude = ("secrets",)  # write-only: set on the team's agent page, never shown
