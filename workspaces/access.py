"""Dashboard tenancy: every workspace page resolves the workspace once and checks membership."""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import cast

from django.contrib.auth.views import redirect_to_login
from django.core.exceptions import PermissionDenied
from django.db.models import QuerySet
from django.http import Http404, HttpRequest, HttpResponse

from ackly.ids import is_public_id
from workspaces.models import Membership, Workspace


class WorkspaceRequest(HttpRequest):
    """The request a `workspace_view` view gets: the type of what the decorator attaches."""

    workspace: Workspace
    membership: Membership
    memberships: QuerySet[Membership]


# The workspace `/` opens: the one whose page the user last viewed (re-checked there).
LAST_WORKSPACE_SESSION_KEY = "last_workspace"


def memberships_of(user) -> QuerySet[Membership]:
    """Every workspace the user belongs to, any role, by name: the header's switcher."""
    return (
        Membership.objects.filter(user=user)
        .select_related("workspace")
        .order_by("workspace__name", "workspace__id")
    )


def remember_workspace(request: HttpRequest, org_id: str) -> None:
    """Written only on a change, so viewing the same workspace again saves no session."""
    if request.session.get(LAST_WORKSPACE_SESSION_KEY) != org_id:
        request.session[LAST_WORKSPACE_SESSION_KEY] = org_id


def workspace_view(*, permission: str | None = None) -> Callable:
    """Decorate a view taking `org_id`: sets request.workspace, .membership and .memberships.

    Anonymous users go to the login page; users who are not members get 404 (the workspace's
    existence is not revealed), as does an id that is not shaped like one (a NUL byte, say);
    a member whose role lacks `permission` (a workspaces/roles.py Permission) gets 403. A
    member's view of an HTML page is remembered in the session for `/`; `memberships` is lazy,
    queried only if the page shows the switcher.
    """

    def decorator(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
        @wraps(view)
        def wrapped(request: HttpRequest, org_id: str, *args, **kwargs) -> HttpResponse:
            if not request.user.is_authenticated:
                return redirect_to_login(request.get_full_path())
            if not is_public_id(org_id, "org"):
                raise Http404("No such workspace")  # junk never reaches the database
            membership = (
                Membership.objects.select_related("workspace__plan")
                .filter(user=request.user, workspace__public_id=org_id)
                .first()
            )
            if membership is None:
                raise Http404("No such workspace")
            if permission is not None and not membership.can(permission):
                raise PermissionDenied("Your role in this workspace does not allow this")
            resolved = cast(WorkspaceRequest, request)  # the same object, given the attributes
            resolved.workspace = membership.workspace
            resolved.membership = membership
            resolved.memberships = memberships_of(request.user)
            response = view(resolved, *args, **kwargs)
            if response.get("Content-Type", "").startswith("text/html"):
                remember_workspace(request, org_id)  # pages only: the JSON feed writes no session
            return response

        # What the view needs, for tests that go through every URL (tests/reliability).
        wrapped.required_permission = permission  # type: ignore[attr-defined]
        return wrapped

    return decorator
