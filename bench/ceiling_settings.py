"""Settings for the ceiling server: Ackly's settings, no middleware, only the ceiling routes.

Loading this module without ACKLY_BENCH_CEILING=1 fails, so the ceiling view cannot be
switched on by accident (production uses ackly.settings, which never routes it).
"""

import os

from django.core.exceptions import ImproperlyConfigured

if os.environ.get("ACKLY_BENCH_CEILING") != "1":
    raise ImproperlyConfigured("bench.ceiling_settings is for the benchmark: set ACKLY_BENCH_CEILING=1")

from ackly.settings import *  # noqa: E402,F403 - same DB pool, cache and server setup

# "Bare": the view and one INSERT, no middleware, no other URL.
ROOT_URLCONF = "bench.ceiling"
MIDDLEWARE: list[str] = []
