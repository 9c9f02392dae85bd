"""Strict JSON's depth limit reads the raw bytes: brackets inside strings never count."""

from __future__ import annotations

import json

import pytest

from ackly.errors import InvalidBody
from ingest.jsonbody import parse_strict_json

LIMIT = 64


def nested(levels: int, leaf: object = 1) -> bytes:
    """`levels` containers, alternating objects and arrays, around `leaf`."""
    value = leaf
    for i in range(levels):
        value = {"k": value} if i % 2 else [value]
    return json.dumps(value).encode()


TRICKY_STRINGS = [
    "[" * 200,
    "{" * 100 + "]" * 100,
    'a quote \\" then [[[[',
    "ends in a backslash \\",
    '\\\\" still inside? [[[',
    "\u00e9[[[ \u2603 {{{",
    '"' * 70 + "[" * 70,
]


@pytest.mark.parametrize("text", TRICKY_STRINGS)
def test_brackets_quotes_and_backslashes_inside_strings_do_not_count(text):
    body = json.dumps({"events": [{"metadata": {"note": text}}] * 80, "tail": text}).encode()
    assert body.count(b"[") + body.count(b"{") > LIMIT  # the raw scan runs
    assert parse_strict_json(body, LIMIT)["tail"] == text


@pytest.mark.parametrize("text", TRICKY_STRINGS)
def test_64_levels_pass_and_65_fail_whatever_strings_surround_them(text):
    assert parse_strict_json(nested(LIMIT, text), LIMIT) is not None
    with pytest.raises(InvalidBody, match="nests deeper than 64"):
        parse_strict_json(nested(LIMIT + 1, text), LIMIT)


def test_depth_counts_the_deepest_branch_not_the_number_of_containers():
    wide = json.dumps([[[] for _ in range(500)] for _ in range(3)]).encode()
    assert len(parse_strict_json(wide, LIMIT)) == 3
    deep_last = json.dumps([[1] * 100, json.loads(nested(LIMIT))]).encode()
    with pytest.raises(InvalidBody, match="nests deeper than 64"):
        parse_strict_json(deep_last, LIMIT)


@pytest.mark.parametrize("body", [b"   ", b"", b"\n\t "])
def test_an_empty_or_blank_body_is_refused(body):
    with pytest.raises(InvalidBody, match="empty"):
        parse_strict_json(body, LIMIT)
