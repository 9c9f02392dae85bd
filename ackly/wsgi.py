"""WSGI entry point (the HTTP API's server in the production recipe: docs/deployment.md).

API paths go to a handler with the lean API middleware (ackly/handlers.py), every other path
to Django's own.
"""

import os

from django.core.wsgi import get_wsgi_application

from ackly.startup import require_collected_static

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "ackly.settings")
# DEBUG=0 without collectstatic exits with the reason instead of answering 500 on every page;
# before the middleware is built, or WhiteNoise's would first warn of a missing STATIC_ROOT.
require_collected_static()

django_application = get_wsgi_application()

from ackly.errors import is_api_path  # noqa: E402
from ackly.handlers import ApiWSGIHandler  # noqa: E402
from ackly.memory import freeze_loaded_objects  # noqa: E402

api_application = ApiWSGIHandler()


def application(environ, start_response):
    if is_api_path(environ.get("PATH_INFO", "")):
        return api_application(environ, start_response)
    return django_application(environ, start_response)


freeze_loaded_objects()
