"""A bounded exit for server processes whose request threads wait on a stopped event loop.

Under Daphne, Django runs sync code in executor threads. A thread that calls `async_to_sync`
(Django's adapter around a sync-only middleware such as WhiteNoise's, in front of the
async-capable ones) waits for the server's event loop. SIGTERM stops that loop; the waiting
threads never wake, and the interpreter's exit joins every executor thread, so the process
hung forever (reproduced under light ingest load: 4 of 4 SIGTERMs). The broadcast, which
waited the same way, now has its own loop (ingest.broadcast); this guard covers the rest.

`install()` registers a hook that runs when the interpreter starts to exit, before
`concurrent.futures` joins its threads: it arms a watchdog that ends the process after
EXIT_GRACE_SECONDS. Threads still running a view get that long to finish (their transaction
commits or, when the process ends, PostgreSQL rolls it back); a thread that only waits for the
stopped loop has no response to deliver anyway. A process whose threads all finish exits
normally, before the watchdog fires.
"""

from __future__ import annotations

import os
import sys
import threading
import time

from ackly.compat import at_interpreter_exit

# Longer than the broadcast's own bound (ingest.broadcast.SEND_TIMEOUT_SECONDS), shorter than
# the 10 s after which supervisors (the bench, tests/servers.py, systemd's default is 90 s)
# send SIGKILL.
EXIT_GRACE_SECONDS = 5.0

_installed = False


def install(grace: float = EXIT_GRACE_SECONDS) -> None:
    """Once per process: at interpreter exit, end the process after `grace` s if still running."""
    global _installed
    if _installed:
        return
    _installed = True
    # Before the interpreter joins the executor threads (see ackly.compat).
    at_interpreter_exit(lambda: _arm(grace))


def _arm(grace: float) -> None:
    def watchdog() -> None:
        time.sleep(grace)
        stuck = [t.name for t in threading.enumerate() if t.is_alive() and not t.daemon]
        sys.stderr.write(
            f"ackly: exit did not finish within {grace:.0f}s; {len(stuck)} thread(s) still "
            "waiting (a stopped event loop); ending the process.\n"
        )
        sys.stderr.flush()
        os._exit(1)

    threading.Thread(target=watchdog, name="ackly-exit-watchdog", daemon=True).start()
