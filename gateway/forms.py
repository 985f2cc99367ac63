from __future__ import annotations

from django import forms

from gateway.providers import Provider


class CredentialForm(forms.Form):
    """A team's model key for one provider: set or replaced, never shown again."""

    provider = forms.ChoiceField(choices=Provider.choices)
    base_url = forms.CharField(
        label="Base URL",
        required=False,
        max_length=500,
        help_text="Empty: the provider's own API. Required for OpenAI-compatible servers, "
        "e.g. http://10.0.0.5:8000/v1 for a vLLM or Ollama.",
    )
    key = forms.CharField(
        label="Key",
        strip=True,
        widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "off"}),
        help_text="Stored encrypted; the agents' sandboxes never see it.",
    )
