"""The live page's feed rows as HTML: the server's half of the one row markup.

The page renders its first page of rows here; static/js/live.js (`renderRow`) builds the same
markup from the same item for rows that arrive later or are loaded as older: change them
together. The rows are written here rather than by a template because the template engine
spent about 40 us a row on its lookups and escaping, 4 ms of a load's CPU for 100 rows; this
takes about 10 us a row. Every text from the item is escaped (`html.escape`, which Django's
`escape` also uses); the time is `{% when %}`'s own markup (ackly/templatetags/times.py).
"""

from __future__ import annotations

from html import escape
from urllib.parse import quote

from django.utils.safestring import SafeString, mark_safe

from ackly.templatetags.times import when

ROW = (
    '<li class="row row-{kind}" data-id="{id}" data-received="{received_at}">\n'
    '  <a class="row-link" href="{url}">\n'
    '    <span class="badge badge-{badge}" title="{label}"><span class="badge-text">{label}</span></span>\n'
    '    <span class="row-main">\n'
    '      <span class="row-type" title="{event_type}">{event_type}</span>\n'
    '      <span class="row-message" title="{text}">{text}</span>\n'
    '    </span>\n'
    '    <span class="row-source" title="{source}">{source}</span>\n'
    '    <span class="row-worker" title="{worker}">{worker}</span>\n'
    '    <span class="row-duration">{duration}</span>\n'
    '    {time}\n'
    '  </a>\n'
    '</li>\n'
)


def duration_text(item: dict) -> str:
    """Duration as people read it (ms for ingest events, seconds for timeline events)."""
    if item["kind"] == "event":
        ms = item.get("durationMs")
        if ms is None:
            return ""
        return f"{ms:.0f} ms" if ms < 1000 else f"{ms / 1000:.1f} s"
    seconds = item.get("duration")
    if seconds is None:
        return ""
    return f"{seconds} s" if seconds < 60 else f"{seconds // 60} m {seconds % 60} s"


def row_html(item: dict, detail_url: str) -> str:
    """One feed item (ingest/present.py's shape) as the page's `<li>`. `detail_url` is the
    detail page's URL with `__id__` for the id, as the page's script has it."""
    event = item["kind"] == "event"
    worker = "" if event else item["worker"]["displayName"]
    texts = {
        "kind": item["kind"],
        "id": item["id"],
        "received_at": item["receivedAt"],
        "url": detail_url.replace("__id__", quote(item["id"], safe="")),
        "badge": item["status"] if event else "timeline",
        "label": item["status"] if event else item["category"],
        "event_type": item["eventType"] or "—",
        "text": item["message"] if event else worker,
        "source": item["source"]["name"],
        "worker": (item["externalId"] or "") if event else worker,
        "duration": duration_text(item),
    }
    return ROW.format(
        time=when(item["receivedAt"], cls="row-time"),
        **{name: escape(value) for name, value in texts.items()},
    )


def rows_html(items: list[dict], detail_url: str) -> SafeString:
    """The items' rows, newest first as given, for the page's `<ol id="feed">`."""
    return mark_safe("".join(row_html(item, detail_url) for item in items))  # noqa: S308 - escaped
