"""The rejections panel opens to the refused requests behind each count (time, code, message, id)."""

from __future__ import annotations

import pytest
from django.urls import reverse
from django.utils.html import escape

from ingest.models import Rejection
from sources.services import create_source

pytestmark = pytest.mark.django_db


def page_url(workspace) -> str:
    return reverse("rejected-requests", kwargs={"org_id": workspace.public_id})


@pytest.fixture
def refuse(client):
    """Send one refused request with `auth`; the error the sender got."""

    def send(auth: str, body: str) -> dict:
        response = client.post(
            "/api/ingest", body, content_type="application/json", HTTP_AUTHORIZATION=f"Bearer {auth}"
        )
        assert response.status_code == 400
        return response.json()["error"]

    return send


def test_a_member_sees_why_a_source_is_refused_with_the_request_id_to_look_up(
    client, member, workspace, secret, refuse
):
    error = refuse(secret, '{"status": "finished"}')
    client.logout()
    client.force_login(member)

    response = client.get(page_url(workspace))

    assert response.status_code == 200
    page = response.content.decode()
    assert error["requestId"] in page
    assert "invalid_body" in page
    assert escape(error["message"]) in page
    assert 'href="/docs/errors/invalid_body/"' in page


def test_it_narrows_to_one_source_and_code_and_never_shows_another_workspace(
    client, owner, workspace, other_workspace, source, secret, refuse
):
    _, second = create_source(workspace, "Billing sync")
    globex, foreign = create_source(other_workspace, "Globex app")
    mine = refuse(secret, '{"status": "crm-refusal"}')
    other_source = refuse(second.secret, '{"status": "billing-refusal"}')
    theirs = refuse(foreign.secret, '{"status": "globex-refusal"}')
    client.force_login(owner)

    everything = client.get(page_url(workspace)).content.decode()
    narrowed = client.get(
        page_url(workspace), {"source": source.public_id, "code": "invalid_body"}
    ).content.decode()
    asking_for_theirs = client.get(
        page_url(workspace), {"source": globex.public_id}
    ).content.decode()

    assert mine["requestId"] in everything and other_source["requestId"] in everything
    assert theirs["requestId"] not in everything
    assert mine["requestId"] in narrowed and other_source["requestId"] not in narrowed
    assert theirs["requestId"] not in asking_for_theirs
    assert "No refused requests match" in asking_for_theirs


def test_each_count_in_the_panel_opens_its_refused_requests(
    client, owner, workspace, source, secret, refuse
):
    refuse(secret, "{}")
    assert Rejection.objects.get().count == 1
    client.force_login(owner)

    live = client.get(reverse("live-events", kwargs={"org_id": workspace.public_id}))

    link = f'{page_url(workspace)}?source={source.public_id}&amp;code=invalid_body'
    assert f'class="rej-count" href="{link}"' in live.content.decode()
    assert f'data-requests-url="{page_url(workspace)}"' in live.content.decode()


def test_an_outsider_gets_404_and_a_visitor_is_sent_to_log_in(client, outsider, workspace):
    assert client.get(page_url(workspace)).status_code == 302
    client.force_login(outsider)
    assert client.get(page_url(workspace)).status_code == 404
