"""The audit log's one writer: who, what, which thing, when; nothing left by a rolled-back change."""

from __future__ import annotations

import pytest
from django.db import transaction

from sources.services import create_source
from workspaces import audit
from workspaces.models import AuditEntry

pytestmark = pytest.mark.django_db


def test_record_names_a_dashboard_user_by_username_and_reads_the_target_public_id(workspace, owner):
    source, _ = create_source(workspace, "CRM")
    AuditEntry.objects.all().delete()
    entry = audit.record(workspace, "source.created", source, actor=owner, details={"name": "CRM"})
    entry.refresh_from_db()
    assert (entry.actor, entry.actor_label) == (owner, "olivia-owner")
    assert (entry.action, entry.target_type) == ("source.created", "source")
    assert entry.target_id == source.public_id
    assert entry.details == {"name": "CRM"}


def test_record_labels_the_admin_and_commands(workspace, owner):
    admin_entry = audit.record(workspace, "plan.changed", actor=audit.admin_actor(owner))
    command_entry = audit.record(workspace, "plan.changed", actor=audit.COMMAND)
    system_entry = audit.record(workspace, "plan.changed")
    assert (admin_entry.actor, admin_entry.actor_label) == (owner, "admin: olivia-owner")
    assert (command_entry.actor, command_entry.actor_label) == (None, "command")
    assert system_entry.actor_label == "system"


def test_a_rolled_back_change_leaves_no_entry(workspace, owner):
    before = AuditEntry.objects.count()
    with pytest.raises(RuntimeError), transaction.atomic():
        audit.record(workspace, "member.removed", actor=owner, target_type="user", target_id="x")
        raise RuntimeError
    assert AuditEntry.objects.count() == before


def test_an_entry_keeps_its_actor_label_after_the_user_is_deleted(workspace, member):
    entry = audit.record(workspace, "member.left", actor=member, target_type="user", target_id="m")
    member.delete()
    entry.refresh_from_db()
    assert (entry.actor, entry.actor_label) == (None, "mario-member")
