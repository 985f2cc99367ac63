from __future__ import annotations

from django.contrib import admin

from notify.models import NotificationPreference, PushSubscription


@admin.register(NotificationPreference)
class NotificationPreferenceAdmin(admin.ModelAdmin):
    list_display = ("user", "toast_after_seconds", "alert_after_seconds", "sound", "do_not_disturb")
    search_fields = ("user__username",)


@admin.register(PushSubscription)
class PushSubscriptionAdmin(admin.ModelAdmin):
    """Browsers only subscribe themselves; the admin may look and remove a dead one."""

    list_display = ("user", "user_agent", "created_at", "last_success_at", "failures")
    search_fields = ("user__username", "endpoint")
    readonly_fields = ("user", "endpoint", "p256dh", "auth", "user_agent", "created_at")

    def has_add_permission(self, request: object) -> bool:
        return False
