from __future__ import annotations

from django import forms

from notify.models import NotificationPreference


class PreferenceForm(forms.ModelForm):
    class Meta:
        model = NotificationPreference
        fields = ["toast_after_seconds", "alert_after_seconds", "sound", "do_not_disturb"]
        labels = {
            "toast_after_seconds": "Toast after (seconds)",
            "alert_after_seconds": "Prominent alert after (seconds)",
            "sound": "Sound",
            "do_not_disturb": "Do not disturb",
        }
