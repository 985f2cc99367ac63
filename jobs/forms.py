from __future__ import annotations

from typing import Any

from django import forms
from django.db.models import F, Q

from jobs import access
from jobs.models import Agent, Repository

PRIORITIES = [(0, "normal"), (5, "high"), (-5, "low")]


class SubmitForm(forms.Form):
    """The dashboard's submit form; validation of substance happens in services.submit_job."""

    repo = forms.ChoiceField(label="Repository")
    base_ref = forms.CharField(
        label="Base branch",
        required=False,
        max_length=200,
        help_text="Empty: the repository's default branch.",
    )
    agent = forms.ChoiceField()
    title = forms.CharField(required=False, max_length=200)
    prompt = forms.CharField(label="Instruction", widget=forms.Textarea(attrs={"rows": 5}))
    attempts = forms.IntegerField(min_value=1, max_value=5, initial=1)
    priority = forms.TypedChoiceField(choices=PRIORITIES, coerce=int, initial=0)

    def __init__(self, *args: Any, user: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        teams = access.teams(user)
        repos = (
            Repository.objects.filter(team__in=teams)
            .select_related("team")
            .order_by("team__name", "name")
        )
        several = len({r.team_id for r in repos}) > 1
        self.fields["repo"].choices = [  # type: ignore[attr-defined]
            (f"{r.team.name}/{r.name}", f"{r.team.name}/{r.name}" if several else r.name)
            for r in repos
        ]
        # A team's own agent of a name comes before the built-in preset of that name (as submit
        # chooses it), and its description is the one shown.
        agents = Agent.objects.filter(Q(team__in=teams) | Q(team=None)).order_by(
            "name", F("team_id").asc(nulls_last=True)
        )
        described = {a.name: a.description for a in reversed(list(agents))}
        names = sorted(described)
        self.fields["agent"].choices = [  # type: ignore[attr-defined]
            (name, f"{name} — {_short(described[name])}" if described[name] else name)
            for name in names
        ]
        if "shell" in names and not self.initial.get("agent"):
            self.initial["agent"] = "shell"


def _short(text: str, most: int = 70) -> str:
    return text if len(text) <= most else text[: most - 1].rstrip() + "…"


class ReviewForm(forms.Form):
    decision = forms.ChoiceField(
        choices=[
            ("approve", "Approve"),
            ("reject", "Reject"),
            ("request_changes", "Request changes"),
        ]
    )
    comment = forms.CharField(required=False, widget=forms.Textarea(attrs={"rows": 3}))
    attempt = forms.IntegerField(required=False, widget=forms.HiddenInput)
