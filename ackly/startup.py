"""Checks a server process runs once at import (ackly/asgi.py, ackly/wsgi.py), never manage.py."""

import sys

from django.conf import settings
from django.contrib.staticfiles.storage import ManifestFilesMixin, staticfiles_storage

# The status uvicorn's and gunicorn's supervisors both read as "this worker cannot boot": they
# stop instead of starting a replacement that would fail the same way, forever.
STARTUP_FAILURE = 3


def require_collected_static() -> None:
    """Exit with one line on stderr when the manifest storage (DEBUG=0) has no manifest.

    Without collectstatic every page that names a static file would answer 500 ("Missing
    staticfiles manifest entry"); a server that refuses to start says why where the deploy sees it.
    """
    if not isinstance(staticfiles_storage, ManifestFilesMixin):
        return
    if staticfiles_storage.exists(staticfiles_storage.manifest_name):
        return
    sys.stderr.write(
        'ackly: DEBUG=0 needs collected static files: run "manage.py collectstatic --noinput" '
        f"(STATIC_ROOT={settings.STATIC_ROOT})\n"
    )
    sys.stderr.flush()
    raise SystemExit(STARTUP_FAILURE)
