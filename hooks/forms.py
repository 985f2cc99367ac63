from __future__ import annotations

from django import forms

from hooks.models import EVENT_STATUSES, URL_MAX_LENGTH


class WebhookForm(forms.Form):
    """A team's new hook. Whether the URL may be called (hooks.guard) is decided by
    services.create_hook, whose refusal the view puts on the url field."""

    url = forms.URLField(
        label="URL",
        max_length=URL_MAX_LENGTH,
        assume_scheme="https",
        help_text="An http:// or https:// endpoint on a public address.",
    )
    events = forms.MultipleChoiceField(
        label="Job statuses",
        choices=[(status.value, status.value) for status in EVENT_STATUSES],
        required=False,
        widget=forms.CheckboxSelectMultiple,
        help_text="None ticked: every one.",
    )


class WebhookEditForm(WebhookForm):
    """A team's hook as it is, to change (services.update_hook checks a new URL likewise)."""

    active = forms.BooleanField(
        required=False, help_text="An inactive webhook is sent nothing, not even retries."
    )
