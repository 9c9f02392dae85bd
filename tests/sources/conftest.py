import pytest


@pytest.fixture(autouse=True)
def _fast_passwords(settings):
    """Personas need a password; the production hasher would only slow these tests down."""
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
