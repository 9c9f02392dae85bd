"""Reading a request body under the size limit, and strict JSON.

The limit is enforced before parsing: a Content-Length over it is refused without reading,
and a body without one (chunked) is read to at most limit + 1 bytes. A body of exactly the
limit is accepted. Strict JSON refuses
what Python's `json` accepts but a well-run API must not: NaN/Infinity, a number too large
for a float (1e400 would parse as infinity), duplicate keys, nesting deeper than
JSON_MAX_DEPTH, invalid UTF-8, and strings PostgreSQL cannot store.
"""

from __future__ import annotations

import json
import math
import re
import sys
from collections import Counter
from typing import Any

from django.http import HttpRequest

from ackly.errors import APIError, InvalidBody


def over_limit(size: int, limit: int) -> bool:
    """The body-size rule: a body of `size` bytes is refused when it is over `limit` (a body
    of exactly `limit` bytes is accepted)."""
    return size > limit


def check_size(size: int, limit: int, too_large: type[APIError]) -> None:
    """The body-size rule of both executors: `too_large` when `size` bytes are over `limit`.

    read_body asks it of the declared Content-Length and of what it read; the fast lane of the
    body it received (at most limit + 1 bytes: ackly.asgi.BodyLimitGuard caps every API body,
    and asks `over_limit` of a declared length)."""
    if over_limit(size, limit):
        raise too_large(_too_large_message(limit))


_DIGITS = re.compile(r"[0-9]+")


def declared_length(field: str) -> int:
    """The body length a Content-Length field declares; InvalidBody when it declares none.

    `field` is the header's value, a repeated header's values joined by commas (as Django's
    request and ackly.apirules.request_headers join them). As RFC 9110 §8.6 allows, a list of
    one number repeated declares that number (h11 reads it so); numbers that differ, or a
    member that is not a number, leave the body's end unknown: RFC 9112 §6.3 makes that a bad
    request."""
    if field.isdigit() and field.isascii() and len(field) <= 18:  # the common case, one number
        return int(field)
    members = [member.strip(" \t") for member in field.split(",")]
    if not all(_DIGITS.fullmatch(member) for member in members):
        raise InvalidBody("The Content-Length header is not a number.")
    numbers = {member.lstrip("0") or "0" for member in members}
    if len(numbers) > 1:
        raise InvalidBody("The request has several Content-Length values that differ.")
    number = numbers.pop()
    # Longer than any body could be (and than int() reads of a string): over every limit.
    return int(number) if len(number) <= 18 else sys.maxsize


def read_body(request: HttpRequest, limit: int, too_large: type[APIError]) -> bytes:
    """The raw body, or `too_large` when it is over `limit` bytes (never read past limit + 1)."""
    declared = request.META.get("CONTENT_LENGTH")
    if declared:
        check_size(declared_length(declared), limit, too_large)
    stream = request
    if not declared and "chunked" in request.META.get("HTTP_TRANSFER_ENCODING", "").lower():
        # Under WSGI Django reads nothing without a Content-Length; the server (gunicorn) has
        # de-chunked the body into wsgi.input, so read it there. Under ASGI there is no
        # wsgi.input: the request holds the body (capped by ackly.asgi.BodyLimitGuard).
        stream = request.META.get("wsgi.input", request)
    body = stream.read(limit + 1)
    check_size(len(body), limit, too_large)
    return body


def _too_large_message(limit: int) -> str:
    return f"The request body is larger than {limit // (1024 * 1024) or limit} " + (
        "MB." if limit >= 1024 * 1024 else "bytes."
    )


class _Reject(ValueError):
    pass


def _reject_constant(name: str) -> Any:
    raise _Reject(f"{name} is not valid JSON; send a finite number or null")


_INFINITIES = (math.inf, -math.inf)


def _finite_float(literal: str) -> float:
    """A float literal's value; one that overflows to ±infinity is refused like `Infinity`.

    The one place every lane (pipeline, fast lane, dry runs) learns that a number is finite:
    PostgreSQL's jsonb and float columns refuse infinity. Integers are exact in Python and in
    jsonb (numeric), so only float literals are checked (~0.1 µs each, measured).
    """
    value = float(literal)
    if value in _INFINITIES:
        shown = literal if len(literal) <= 24 else literal[:20] + "…"
        raise _Reject(f"the number {shown} is too large for a float (over 1.8e308)")
    return value


def _object_without_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj = dict(pairs)
    if len(obj) != len(pairs):
        counts = Counter(k for k, _ in pairs)
        dupes = sorted(k for k, n in counts.items() if n > 1)
        raise _Reject("duplicate key " + ", ".join(repr(k) for k in dupes) + " in an object")
    return obj


# Depth is read from the raw bytes, not the parsed value: walking every container of a 500-event
# batch cost more CPU than the rest of the check (~0.8 ms of ~2 ms per batch). Everything below
# runs in C (translate, replace, split) over the brackets and quotes only.
_ESCAPED_BACKSLASH = b"\\\\"
_ESCAPED_QUOTE = b'\\"'
_OPEN_CLOSE = bytes.maketrans(b"[{]}", b"(())")
_NOT_BRACKETS_OR_QUOTES = bytes(b for b in range(256) if b not in b'[]{}"')


def _depth_exceeds(body: bytes, max_depth: int) -> bool:
    """True when the containers of `body` (valid JSON) nest deeper than max_depth.

    1. Drop escapes: escaped backslashes, then escaped quotes (a run of backslashes inside a
       string starts an escape, so pairing from the left is right); every quote left is a
       string delimiter. UTF-8 continuation bytes never look like ASCII, so bytes are safe.
    2. Keep brackets (as "(" and ")") and quotes only, then drop adjacent quote pairs: that
       keeps every later quote's parity, so strings with no bracket in them vanish for free,
       and the few quotes left are split on to drop what lies inside strings.
    3. Each pass of replace("()", "") removes exactly one level (it does not rescan what it
       produced), so the brackets are gone after `depth` passes.
    """
    if b"\\" in body:
        body = body.replace(_ESCAPED_BACKSLASH, b"").replace(_ESCAPED_QUOTE, b"")
    shape = body.translate(_OPEN_CLOSE, _NOT_BRACKETS_OR_QUOTES).replace(b'""', b"")
    if b'"' in shape:
        shape = b"".join(shape.split(b'"')[::2])
    for _ in range(max_depth):
        shape = shape.replace(b"()", b"")
        if not shape:
            return False
    return True


def parse_strict_json(body: bytes, max_depth: int) -> Any:
    """The parsed body, or InvalidBody naming what is wrong with it."""
    if not body or body.isspace():  # no copy of the body, unlike strip()
        raise InvalidBody("The body is empty; send a JSON object.")
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InvalidBody(f"The body is not valid UTF-8 (byte {exc.start}).") from None
    try:
        value = json.loads(
            text,
            parse_float=_finite_float,
            parse_constant=_reject_constant,
            object_pairs_hook=_object_without_duplicates,
        )
    except _Reject as exc:
        raise InvalidBody(f"The body is not strict JSON: {exc}.") from None
    except RecursionError:
        raise InvalidBody(f"The body nests deeper than {max_depth} levels.") from None
    except json.JSONDecodeError as exc:
        raise InvalidBody(
            f"The body is not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}."
        ) from None
    except ValueError:
        # int() refuses integers of more than sys.get_int_max_str_digits() (4,300) digits.
        raise InvalidBody("The body has an integer too long to read (over 4,300 digits).") from None
    # A body with no more opening brackets than the limit cannot nest deeper (the seed event).
    if isinstance(value, dict | list) and (
        body.count(b"{") + body.count(b"[") > max_depth and _depth_exceeds(body, max_depth)
    ):
        raise InvalidBody(f"The body nests deeper than {max_depth} levels.")
    if b"\\u" in body:
        _refuse_unstorable_strings(value)
    return value


def _refuse_unstorable_strings(value: Any) -> None:
    """Lone surrogates and NUL (\\u0000) parse as JSON but cannot be stored (UTF-8, PostgreSQL)."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
        elif isinstance(item, str):
            if "\x00" in item:
                raise InvalidBody("The body contains a NUL character (\\u0000) in a string.")
            try:
                item.encode("utf-8")
            except UnicodeEncodeError:
                raise InvalidBody(
                    "The body contains an unpaired surrogate escape (\\ud800-\\udfff)."
                ) from None
