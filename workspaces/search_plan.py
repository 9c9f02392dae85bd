"""Which words of a search term to ask a pg_trgm index for, judged by PostgreSQL's statistics.

A pg_trgm GIN index answers `LIKE '%term%'` by intersecting the posting lists of the term's
trigrams. When the term mixes a rare word with words nearly every row holds ("took 4321 ms",
"run-123457"), the common words' lists are as long as the table and GIN walks them to check the
rare word's candidates: at 3,000,000 rows such a search read 4,283 index pages where its rare
word alone read 25, and at 40,000,000 rows it took 380 ms (docs/performance.md). So the index is
asked for the rare words only, and every row it returns is then checked for the whole term,
which gives exactly the rows the whole term matches (each holds every word of it).

How common a word is comes from the sample ANALYZE keeps of the indexed expression (the index's
statistics in pg_stats, 1,000 values as the search migrations set them): the share of sampled
values holding the word, as PostgreSQL itself estimates `LIKE '%word%'`. A term that is itself
common is left whole: the planner then reads the newest rows until the page is full, which the
rare-word form would keep it from choosing.
"""

from __future__ import annotations

import re
import time

from django.db import connection

# A word in this share of the sampled rows or more is left to the check of the whole term.
COMMON_WORD_SHARE = 0.10
# A term in this share of the sampled rows or more is searched as it is (see above).
COMMON_TERM_SHARE = 0.01
# pg_trgm cuts text into words of letters and digits; inside `%…%` a word gives trigrams (and
# so something the index can look up) from three characters on.
WORD = re.compile(r"[^\W_]{3,}")
# The statistics change only when ANALYZE runs (autovacuum, every few minutes at most on a busy
# table): each process reads an index's sample at most once a minute.
SAMPLE_SECONDS = 60.0

Sample = list[tuple[str, float]]  # (value, the share of the rows it stands for)
_samples: dict[str, tuple[float, Sample]] = {}


def forget() -> None:
    """Drop the samples read so far (tests that ANALYZE between searches)."""
    _samples.clear()


def sample(index: str) -> Sample:
    """The index's statistics as (value, share) pairs: the most common values with their
    frequencies, then the histogram's values sharing the rest. Empty before ANALYZE."""
    now = time.monotonic()
    cached = _samples.get(index)
    if cached and now - cached[0] < SAMPLE_SECONDS:
        return cached[1]
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT most_common_vals::text::text[], most_common_freqs, "
            "histogram_bounds::text::text[] FROM pg_stats "
            "WHERE schemaname = current_schema() AND tablename = %s",
            [index],
        )
        row = cursor.fetchone()
    pairs: Sample = []
    if row:
        common, freqs, bounds = row[0] or [], row[1] or [], row[2] or []
        pairs.extend(zip(common, freqs, strict=True))
        if bounds:
            rest = max(0.0, 1.0 - sum(freqs)) / len(bounds)
            pairs.extend((value, rest) for value in bounds)
    _samples[index] = (now, pairs)
    return pairs


def share(values: Sample, text: str) -> float:
    """The share of the sampled rows whose indexed text (upper case) holds `text`."""
    needle = text.upper()
    return sum(weight for value, weight in values if needle in value)


def rare_words(index: str, term: str) -> list[str] | None:
    """The words of `term` to ask `index` for instead of the whole term, or None to ask for
    the term as it is: without statistics, for a common term, for a term that is one word, and
    when every word is common. Words too short to give trigrams ("ms", "eu") are never asked
    for: the index could not narrow by them, and their trigrams padded with spaces are common."""
    words = WORD.findall(term)
    if not words:
        return None
    values = sample(index)
    if not values or share(values, term) >= COMMON_TERM_SHARE:
        return None
    rare = [word for word in words if share(values, word) < COMMON_WORD_SHARE]
    if not rare or rare == [term]:
        return None
    return rare
