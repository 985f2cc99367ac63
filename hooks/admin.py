"""Webhooks and their delivery log in the admin, for staff.

Hooks are made (URL checked by the SSRF guard), switched off and on and deleted through
hooks.services, so each change writes one audit entry. Deliveries are read-only: the log of what
was sent, with each try's status code. The "Redeliver" action sends a delivery's very body again
as a new delivery (its own id and log; `redelivery_of` points at the original).
"""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest
from django.urls import reverse
from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString

from hooks import services
from hooks.models import EVENT_STATUSES, URL_MAX_LENGTH, Delivery, Webhook
from jobs.errors import ServiceError


class StaffOnly:
    """Site admins are Django staff (PRODUCT.md, roles)."""

    def has_view_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return bool(request.user.is_active and request.user.is_staff)

    def has_module_permission(self, request: HttpRequest) -> bool:
        return self.has_view_permission(request)


class WebhookAdminForm(forms.ModelForm):
    url = forms.URLField(label="URL", max_length=URL_MAX_LENGTH, assume_scheme="https")
    events = forms.MultipleChoiceField(
        choices=[(status.value, status.value) for status in EVENT_STATUSES],
        required=False,
        widget=forms.CheckboxSelectMultiple,
        help_text="None ticked: every one.",
    )

    class Meta:
        model = Webhook
        # url and events are the form's own fields: services.create_hook makes the hook.
        fields = ["team"]

    def clean_url(self) -> str:
        try:
            return services.check_url(self.cleaned_data["url"])
        except services.Refused as exc:
            raise forms.ValidationError(str(exc)) from None


@admin.register(Webhook)
class WebhookAdmin(StaffOnly, admin.ModelAdmin):
    list_display = ("url", "team", "job", "events_label", "active", "created_by", "created_at")
    list_filter = ("active", "team", ("job", admin.EmptyFieldListFilter))
    search_fields = ("url", "team__name", "job__public_id")
    actions = ["activate", "deactivate"]
    form = WebhookAdminForm

    def get_fields(self, request: HttpRequest, obj: Any = None) -> tuple[str, ...]:
        if obj is None:
            return ("team", "url", "events")
        return (
            "team",
            "job",
            "url",
            "events_label",
            "active",
            "secret",
            "created_by",
            "created_at",
        )

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> tuple[str, ...]:
        return () if obj is None else self.get_fields(request, obj)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return self.has_view_permission(request)

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        # Nothing is edited here: a team's hook is edited, and its secret rotated, on the team's
        # page (hooks.views), through the guard; the actions switch hooks off and on.
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return self.has_view_permission(request)

    def save_model(self, request: HttpRequest, obj: Webhook, form: Any, change: bool) -> None:
        data = form.cleaned_data
        made = services.create_hook(request.user, data["team"], data["url"], data["events"])
        obj.pk = made.pk

    def get_deleted_objects(self, objs: Any, request: HttpRequest) -> Any:
        deleted, counts, perms_needed, protected = super().get_deleted_objects(objs, request)
        # Nobody deletes a delivery on its own, but a hook's delivery log goes with the hook.
        perms_needed.discard(Delivery._meta.verbose_name)
        return deleted, counts, perms_needed, protected

    def delete_model(self, request: HttpRequest, obj: Webhook) -> None:
        services.delete_hook(request.user, obj)

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[Webhook]) -> None:
        for hook in queryset:
            services.delete_hook(request.user, hook)

    @admin.action(description="Activate the selected webhooks")
    def activate(self, request: HttpRequest, queryset: QuerySet[Webhook]) -> None:
        changed = sum(services.set_active(request.user, hook, True) for hook in queryset)
        self.message_user(request, f"Activated {changed} webhook(s).")

    @admin.action(description="Deactivate the selected webhooks")
    def deactivate(self, request: HttpRequest, queryset: QuerySet[Webhook]) -> None:
        changed = sum(services.set_active(request.user, hook, False) for hook in queryset)
        self.message_user(request, f"Deactivated {changed} webhook(s).")


@admin.register(Delivery)
class DeliveryAdmin(StaffOnly, admin.ModelAdmin):
    list_display = (
        "created_at",
        "event",
        "job",
        "hook_url",
        "status",
        "attempts",
        "last_status_code",
        "answers",
        "pk",
    )
    list_filter = ("status", "event", "last_status_code", "hook__team", "created_at")
    search_fields = ("=id", "job__public_id", "hook__url")
    list_select_related = ("hook", "job")
    date_hierarchy = "created_at"
    actions = ["redeliver"]
    fields = (
        "id",
        "hook",
        "job",
        "event",
        "status",
        "attempts",
        "tries_table",
        "last_status_code",
        "last_error",
        "created_at",
        "last_attempt_at",
        "delivered_at",
        "redelivery_of",
        "body",
    )
    readonly_fields = fields

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    @admin.display(description="URL", ordering="hook__url")
    def hook_url(self, delivery: Delivery) -> str:
        return delivery.hook.url

    @admin.display(description="answers")
    def answers(self, delivery: Delivery) -> str:
        return ", ".join(str(code or "none") for code in delivery.status_codes)

    @admin.display(description="tries")
    def tries_table(self, delivery: Delivery) -> SafeString:
        rows = format_html_join(
            "",
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            (
                (t.get("at"), t.get("status_code") or "none", t.get("ms"), t.get("error") or "")
                for t in delivery.tries
            ),
        )
        return format_html(
            "<table><thead><tr><th>at</th><th>status code</th><th>ms</th><th>error</th></tr>"
            "</thead><tbody>{}</tbody></table>",
            rows,
        )

    @admin.action(description="Redeliver (a new delivery of the same body)")
    def redeliver(self, request: HttpRequest, queryset: QuerySet[Delivery]) -> None:
        for delivery in queryset.select_related("hook"):
            try:
                again = services.redeliver(request.user, delivery)
            except ServiceError as exc:
                self.message_user(request, exc.detail, messages.ERROR)
                continue
            url = reverse("admin:hooks_delivery_change", args=[again.pk])
            self.message_user(
                request,
                format_html('Redelivering {} as <a href="{}">{}</a>.', delivery.pk, url, again.pk),
            )
