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
from django.utils.html import escape
from django.utils.safestring import mark_safe

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
    # Every text is a slice of one isoformat(): the live page writes 100 of these a load, and
    # format_html with two strftime() calls cost four times as much. Only `cls` needs escaping:
    # the rest is digits and punctuation made here, and `style` is one of STYLES.
    exact = moment.isoformat(timespec="milliseconds")[:-6] + "Z"  # UTC: always "+00:00"
    seconds = f"{exact[:10]} {exact[11:19]}"
    text = seconds[:10] if style == "date" else seconds[:16]
    attr = f' class="{escape(cls)}"' if cls else ""
    return mark_safe(  # noqa: S308 - cls is escaped, the rest is made above
        f'<time{attr} datetime="{exact}" data-when="{style}" title="{seconds} UTC">{text} UTC</time>'
    )
