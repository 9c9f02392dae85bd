"""Test helpers about keys."""

from ackly.errors import APIError
from sources.auth import authenticate_key


def refusal(secret: str) -> str | None:
    """None when the key authenticates, else the error code it is refused with."""
    try:
        authenticate_key(f"Bearer {secret}")
    except APIError as error:
        return error.code
    return None
