"""`{% when instant %}`: the one way a page shows a time (docs/dashboard.md, "Time").

It writes `<time datetime="…Z" data-when="…" title="… UTC">… UTC</time>`: an exact UTC instant
for machines and, for a reader without script, a labelled UTC minute. static/js/time.js then
shows it in the browser's zone: relative while recent ("2 min ago", kept current), the
absolute local time in the title.
"""

from __future__ import annotations

from datetime import UTC, datetime

from django import template
from django.utils.dateparse import parse_datetime
from django.utils.html import format_html

register = template.Library()

STYLES = ("relative", "absolute", "date")


def instant(value: object) -> datetime | None:
    """A datetime or an ISO 8601 string (as the feed's JSON has them) as an aware UTC datetime."""
    if isinstance(value, str):
        value = parse_datetime(value)
    if not isinstance(value, datetime):
        return None
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


@register.simple_tag
def when(value: object, style: str = "relative", cls: str = "") -> str:
    """The instant as a `<time>` element; empty for None. `style`: relative (recent times read
    "2 min ago"), absolute (always the local date and time) or date (the local date only)."""
    moment = instant(value)
    if moment is None:
        return ""
    if style not in STYLES:
        raise template.TemplateSyntaxError(f"when: style must be one of {', '.join(STYLES)}")
    text = moment.strftime("%Y-%m-%d" if style == "date" else "%Y-%m-%d %H:%M")
    exact = moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")
    return format_html(
        '<time{} datetime="{}" data-when="{}" title="{} UTC">{} UTC</time>',
        format_html(' class="{}"', cls) if cls else "",
        exact, style, moment.strftime("%Y-%m-%d %H:%M:%S"), text,
    )
