"""Checks of a person's input that several services share."""

from __future__ import annotations

from django.core.exceptions import ValidationError
from django.core.validators import URLValidator

from jobs.errors import BadInput


def check_http_url(url: str, field: str) -> None:
    """An http(s) URL, or BadInput naming the field."""
    try:
        URLValidator(schemes=["http", "https"])(url)
    except ValidationError:
        raise BadInput(f"{field} must be an http(s) URL, not {url!r}.", field=field) from None
