"""Dashboard tenancy: every workspace page resolves the workspace once and checks membership."""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import cast

from django.contrib.auth.views import redirect_to_login
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest, HttpResponse

from ackly.ids import is_public_id
from workspaces.models import Membership, Workspace


class WorkspaceRequest(HttpRequest):
    """The request a `workspace_view` view gets: the type of what the decorator attaches."""

    workspace: Workspace
    membership: Membership


def workspace_view(*, manage: bool = False) -> Callable:
    """Decorate a view taking `org_id`: sets request.workspace and request.membership.

    Anonymous users go to the login page; users who are not members get 404 (the workspace's
    existence is not revealed), as does an id that is not shaped like one (a NUL byte, say);
    `manage=True` also needs the owner or admin role (403).
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
            if manage and not membership.can_manage:
                raise PermissionDenied("Only owners and admins can do this")
            resolved = cast(WorkspaceRequest, request)  # the same object, given the attributes
            resolved.workspace = membership.workspace
            resolved.membership = membership
            return view(resolved, *args, **kwargs)

        return wrapped

    return decorator
