"""Settings read from the environment, checked in a process of their own."""

from __future__ import annotations

import json

from tests.servers import manage, server_env

SHOW_DATABASE = (
    "import json; from django.db import connection; "
    "connection.ensure_connection(); "
    "print(json.dumps({'options': connection.settings_dict['OPTIONS'], "
    "'journal': connection.cursor().execute('PRAGMA journal_mode').fetchone()[0]}))"
)


def test_a_sqlite_database_url_gets_the_same_options_as_the_default_file(tmp_path):
    """Concurrent writers queue on any SQLite file instead of failing with "database is locked"."""
    path = tmp_path / "named.sqlite3"
    env = server_env(DATABASE_URL=f"sqlite:///{path}")
    shown = json.loads(manage(env, "shell", "-c", SHOW_DATABASE).strip().splitlines()[-1])

    assert shown["options"]["transaction_mode"] == "IMMEDIATE"
    assert shown["options"]["timeout"] == 20
    assert shown["journal"] == "wal"
    assert path.exists()
