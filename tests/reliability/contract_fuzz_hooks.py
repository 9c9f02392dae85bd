"""Schemathesis hooks for test_contract_fuzz.py: where OpenAPI 3.0 cannot state a rule we keep.

Loaded by the schemathesis CLI (the `hooks` line of tests/reliability/schemathesis.toml), not by pytest.
Each hook narrows what is *generated* to what the documented contract already promises, so a
failure of positive_data_acceptance or negative_data_rejection points at a real mismatch:

* `timestamp` (date-time) is at most 24 hours in the future and falls on or after year 1 in
  UTC: relative to now, so no schema keyword can say it. Generated in that range, in several
  offsets, including the year-1 edges that once made a 500.
* metric names are 1-100 characters: OpenAPI 3.0 has no `propertyNames`.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import schemathesis
from hypothesis import strategies as st

_OFFSETS = [UTC] + [timezone(timedelta(minutes=m)) for m in (-720, -300, 330, 345, 840)]
# A day after year 1 begins, so every offset above still lands in year 1 or later in UTC.
_EARLIEST = datetime(1, 1, 2)


def _timestamps() -> st.SearchStrategy[str]:
    latest = datetime.now(UTC).replace(tzinfo=None) + timedelta(hours=23)
    return st.builds(
        lambda moment, offset, zulu: _render(moment.replace(tzinfo=UTC).astimezone(offset), zulu),
        st.datetimes(min_value=_EARLIEST, max_value=latest),
        st.sampled_from(_OFFSETS),
        st.booleans(),
    )


def _render(moment: datetime, zulu: bool) -> str:
    text = moment.isoformat()
    return text.replace("+00:00", "Z") if zulu else text


schemathesis.openapi.format("date-time", _timestamps())


@schemathesis.hook
def filter_body(context: schemathesis.HookContext, body: object) -> bool:
    metrics = body.get("metrics") if isinstance(body, dict) else None
    if isinstance(metrics, dict):
        return all(1 <= len(name) <= 100 for name in metrics)
    return True

