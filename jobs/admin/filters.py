"""Changelist filters the admin does not have: a date range, a job's touched files, its reviewers.

The range and the file are typed into a small GET form (templates/admin/agenthub/form_filter.html)
that carries the other active filters along as hidden fields, so it works without JavaScript under
the page's strict Content-Security-Policy.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date, datetime, time, timedelta
from typing import Any

from django.contrib import admin, messages
from django.contrib.admin.options import IncorrectLookupParameters
from django.contrib.admin.views.main import ChangeList
from django.contrib.auth import get_user_model
from django.db import NotSupportedError, connection
from django.db.models import Model, QuerySet
from django.db.models.expressions import RawSQL
from django.http import HttpRequest
from django.utils import timezone

from jobs.models import Attempt, Review

FORM_TEMPLATE = "admin/agenthub/form_filter.html"


def _form_choice(
    spec: admin.ListFilter, changelist: ChangeList, inputs: list[dict[str, str]]
) -> dict[str, Any]:
    """The one "choice" a form filter renders (instead of links): its inputs, and the other
    filters as hidden fields."""
    own = [name for name in spec.expected_parameters() or [] if name]
    return {
        "inputs": inputs,
        "hidden": [
            (name, value)
            for name, values in changelist.filter_params.items()
            if name not in own
            for value in values
        ],
        "clear_url": changelist.get_query_string(remove=own) if spec.used_parameters else "",
    }


class DateRangeFilter(admin.FieldListFilter):
    """Days from and to (both included) on a date-time field: `<field>__from`, `<field>__to`."""

    template = FORM_TEMPLATE

    def __init__(
        self,
        field: Any,
        request: HttpRequest,
        params: dict[str, list[str]],
        model: type[Model],
        model_admin: admin.ModelAdmin[Any],
        field_path: str,
    ) -> None:
        self.param_from, self.param_to = f"{field_path}__from", f"{field_path}__to"
        super().__init__(field, request, params, model, model_admin, field_path)
        self.title = "date"
        self.values = {k: str(v[-1]) for k, v in self.used_parameters.items() if v[-1]}  # type: ignore[index]
        self.used_parameters = dict(self.values)

    def expected_parameters(self) -> list[str | None]:
        return [self.param_from, self.param_to]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        since, until = self._day(self.param_from), self._day(self.param_to)
        if since is not None:
            queryset = queryset.filter(**{f"{self.field_path}__gte": _midnight(since)})
        if until is not None:
            queryset = queryset.filter(
                **{f"{self.field_path}__lt": _midnight(until + timedelta(days=1))}
            )
        return queryset

    def _day(self, param: str) -> date | None:
        value = self.values.get(param)
        if value is None:
            return None
        try:
            return date.fromisoformat(value)
        except ValueError:
            problem = f"{param}={value!r} is not a date: expected YYYY-MM-DD."
            messages.error(self.request, problem)
            raise IncorrectLookupParameters(problem) from None

    def choices(self, changelist: ChangeList) -> Iterator[dict[str, Any]]:  # type: ignore[override]
        yield _form_choice(
            self,
            changelist,
            [
                self._input(self.param_from, "From"),
                self._input(self.param_to, "To (included)"),
            ],
        )

    def _input(self, name: str, label: str) -> dict[str, str]:
        return {
            "name": name,
            "label": label,
            "type": "date",
            "value": self.values.get(name, ""),
        }


def _midnight(day: date) -> datetime:
    return timezone.make_aware(datetime.combine(day, time.min))


# Jobs with an attempt whose diff has a file whose path (or, for a rename, old path) contains
# the text. Attempt.files is a JSON list of {path, old_path, ...}; neither database has a portable
# ORM lookup for "any element of a JSON list", so each gets its own small query.
_TOUCHED_SQL = {
    "sqlite": (
        "SELECT a.job_id FROM {table} a, json_each(a.files) f"
        " WHERE json_extract(f.value, '$.path') LIKE %s ESCAPE '\\'"
        " OR json_extract(f.value, '$.old_path') LIKE %s ESCAPE '\\'"
    ),
    "postgresql": (
        "SELECT a.job_id FROM {table} a, jsonb_array_elements(a.files) f"
        " WHERE f ->> 'path' ILIKE %s ESCAPE '\\' OR f ->> 'old_path' ILIKE %s ESCAPE '\\'"
    ),
}


def jobs_touching(path_part: str) -> RawSQL:
    """A subquery of the ids of jobs that changed a file whose path contains `path_part`
    (case-insensitive); use as `Job.objects.filter(pk__in=jobs_touching("app.py"))`."""
    sql = _TOUCHED_SQL.get(connection.vendor)
    if sql is None:
        raise NotSupportedError(
            f"Finding jobs by touched file needs SQLite or PostgreSQL, not {connection.vendor}."
        )
    escaped = path_part.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    pattern = f"%{escaped}%"
    # The SQL is constant; the text typed in is a parameter.
    return RawSQL(sql.format(table=Attempt._meta.db_table), (pattern, pattern))  # noqa: S611


class TouchedFileFilter(admin.ListFilter):
    title = "touched file"
    parameter_name = "touched"
    template = FORM_TEMPLATE

    def __init__(
        self,
        request: HttpRequest,
        params: dict[str, list[str]],
        model: type[Model],
        model_admin: admin.ModelAdmin[Any],
    ) -> None:
        super().__init__(request, params, model, model_admin)
        self.value = params.pop(self.parameter_name, [""])[-1].strip()
        if self.value:
            self.used_parameters[self.parameter_name] = self.value

    def has_output(self) -> bool:
        return True

    def expected_parameters(self) -> list[str | None]:
        return [self.parameter_name]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        return queryset.filter(pk__in=jobs_touching(self.value)) if self.value else queryset

    def choices(self, changelist: ChangeList) -> Iterator[dict[str, Any]]:
        yield _form_choice(
            self,
            changelist,
            [
                {
                    "name": self.parameter_name,
                    "label": "Path contains",
                    "type": "text",
                    "value": self.value,
                }
            ],
        )


class ReviewerFilter(admin.SimpleListFilter):
    """Jobs that a person reviewed (any decision, any attempt)."""

    title = "reviewer"
    parameter_name = "reviewer"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        users = get_user_model()
        reviewers = users.objects.filter(pk__in=Review.objects.values("reviewer_id"))
        return [(str(u.pk), u.get_username()) for u in reviewers.order_by(users.USERNAME_FIELD)]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        value = self.value()
        if not value:
            return queryset
        if not value.isdigit():
            raise IncorrectLookupParameters(f"reviewer={value!r}: expected a user id.")
        reviewed = Review.objects.filter(reviewer_id=int(value)).values("attempt__job_id")
        return queryset.filter(pk__in=reviewed)
