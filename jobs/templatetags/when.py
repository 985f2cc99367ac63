"""`{{ value|when }}`: a moment as one format everywhere, `2026-12-08 04:05 UTC` (`when:"seconds"`
adds the seconds), inside `<time datetime=… data-local>`, which app.js rewrites in the browser's
own time zone, named."""

from __future__ import annotations

from datetime import UTC, datetime

from django import template
from django.utils import timezone
from django.utils.html import format_html
from django.utils.safestring import SafeString

register = template.Library()


@register.filter
def when(value: datetime | None, precision: str = "") -> SafeString | str:
    if value is None:
        return ""
    utc = timezone.localtime(value, UTC) if timezone.is_aware(value) else value
    shown = utc.strftime("%Y-%m-%d %H:%M:%S" if precision == "seconds" else "%Y-%m-%d %H:%M")
    return format_html(
        '<time datetime="{}" data-local="{}">{} UTC</time>',
        utc.isoformat(),
        precision,
        shown,
    )
