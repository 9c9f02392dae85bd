"""docs/teams.md shows the roles table the code enforces (workspaces/roles.py), row for row."""

from __future__ import annotations

from pathlib import Path

from workspaces.members import roles_table
from workspaces.roles import ROLE_ORDER, Role

DOC = Path(__file__).resolve().parents[2] / "docs" / "teams.md"


def test_the_documented_roles_table_is_the_one_in_the_code():
    lines = DOC.read_text().splitlines()
    header = "| Permission | " + " | ".join(Role(r).label for r in ROLE_ORDER) + " |"
    start = lines.index(header) + 2  # the header, then the |---| line
    documented = []
    for line in lines[start:]:
        if not line.startswith("|"):
            break
        label, *cells = [cell.strip() for cell in line.strip("|").split("|")]
        documented.append((label, [cell == "✓" for cell in cells]))
    assert documented == roles_table()
