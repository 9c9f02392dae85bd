"""Which words of a search term to ask a pg_trgm index for, judged by PostgreSQL's statistics.

A pg_trgm GIN index answers `LIKE '%term%'` by intersecting the posting lists of the term's
trigrams. When the term mixes a rare word with words nearly every row holds ("took 4321 ms",
"run-1234567"), the common words' lists are as long as the table and GIN walks them to check
the rare word's candidates: at 3,000,000 rows such a search read 4,283 index pages where its
rare word alone read 25. So the index is asked for the rare words only, and every row it
returns is then checked for the whole term, which gives exactly the rows the whole term
matches (each holds every word of it).

How common a word is comes from the sample ANALYZE keeps of the indexed expression (the index's
statistics in pg_stats: its most common values and a histogram of up to 1,001 more, as the
search migrations set them): the share of the rows whose sampled value holds the word, as
PostgreSQL itself estimates `LIKE '%word%'`. Only a term that has both a common word and a
rare one is rewritten: a rare word is in at most one sampled value, so that the rows the index
returns for it stay few however the planner weighs them (it has no statistics for the whole
term's check and expects it to keep almost nothing); a term whose words are all rare is served
as well by its own trigrams, and one with no rare word gains nothing.
"""

from __future__ import annotations

import re
import time

from django.db import connection

# A word in this share of the rows or more is common: left to the check of the whole term.
COMMON_WORD_SHARE = 0.10
# A word in less than this share is rare: the index is asked for it. At most one value of the
# 1,000-value sample: the rows the index then returns are read one by one (8 µs each), and past
# about 1 in 1,000 rows they cost more than walking the common words' lists.
RARE_WORD_SHARE = 0.0015
# pg_trgm cuts text into words of letters and digits; inside `%…%` a word gives trigrams (and
# so something the index can look up) from three characters on.
WORD = re.compile(r"[^\W_]+")
SHORTEST_LOOKUP = 3
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
    frequencies, then the histogram's values sharing the rows neither NULL nor among them.
    Empty before ANALYZE, and for a role that may not read the table's statistics."""
    now = time.monotonic()
    cached = _samples.get(index)
    if cached and now - cached[0] < SAMPLE_SECONDS:
        return cached[1]
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT null_frac, most_common_vals::text::text[], most_common_freqs, "
            "histogram_bounds::text::text[] FROM pg_stats "
            "WHERE schemaname = current_schema() AND tablename = %s",
            [index],
        )
        row = cursor.fetchone()
    pairs: Sample = []
    if row:
        nulls, common, freqs, bounds = row[0] or 0.0, row[1] or [], row[2] or [], row[3] or []
        pairs.extend(zip(common, freqs, strict=True))
        if bounds:
            rest = max(0.0, 1.0 - nulls - sum(freqs)) / len(bounds)
            pairs.extend((value, rest) for value in bounds)
    _samples[index] = (now, pairs)
    return pairs


def share(values: Sample, text: str) -> float:
    """The share of the sampled rows whose indexed text (upper case) holds `text`."""
    needle = text.upper()
    return sum(weight for value, weight in values if needle in value)


def rare_words(index: str, term: str) -> list[str] | None:
    """The words of `term` to ask `index` for instead of the whole term, or None to ask for
    the term as it is: unless the term has a common word and a rare one of three characters or
    more (see above), and always before the index has statistics."""
    words = list(dict.fromkeys(WORD.findall(term)))
    if len(words) < 2:
        return None  # one word cannot be both: no need for the sample
    values = sample(index)
    if not values:
        return None
    shares = {word: share(values, word) for word in words}
    rare = [word for word, part in shares.items()
            if part < RARE_WORD_SHARE and len(word) >= SHORTEST_LOOKUP]
    if not rare or max(shares.values()) < COMMON_WORD_SHARE:
        return None
    return rare
