"""The members page (roles, invitations, leaving), the audit log, deleting a workspace, and the
invitation link's pages.

Every change is a POST to its own URL, checked against the roles table (workspaces/roles.py) by
`workspace_view` and again, under the workspace's lock, by the service in workspaces/services.py.
The invitation link works like sign-up's (workspaces/accounts.py): its page keeps the token in
the session and redirects to a token-free page, so no error answer ever carries a valid token.
"""

from __future__ import annotations

import logging
import smtplib

from django.conf import settings
from django.contrib import messages
from django.contrib.auth import login
from django.core.mail import send_mail
from django.core.paginator import Paginator
from django.db.models import Case, IntegerField, Value, When
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.template.loader import render_to_string
from django.urls import reverse
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from workspaces.access import WorkspaceRequest, workspace_view
from workspaces.accounts import (
    MAIL_FAILED,
    MODEL_BACKEND,
    TOO_MANY_SIGN_UPS,
    EmailTaken,
    _absolute,
    _email_taken,
    _refused_link,
    create_account,
    fixed_key,
    remember_device,
    spent,
)
from workspaces.forms import (
    DeleteWorkspaceForm,
    FinishSignupForm,
    InvitationForm,
    InviteForm,
    MemberForm,
    RoleForm,
)
from workspaces.models import AuditEntry, Invitation, Membership
from workspaces.roles import PERMISSIONS, ROLE_ORDER, Permission, Role, grantable_roles
from workspaces.services import (
    InvitationUnusable,
    MemberChangeRefused,
    accept_invitation,
    change_role,
    check_usable,
    delete_workspace,
    find_invitation,
    invite_member,
    leave_workspace,
    remove_member,
    revoke_invitation,
)

logger = logging.getLogger(__name__)

INVITE_SESSION_TOKEN = "_invite_token"  # the link's token, once its page has been opened
AUDIT_PAGE_SIZE = 50
TOO_MANY_INVITATIONS = "This workspace has sent many invitations in the last hour. Try again later."


def _members_url(request: WorkspaceRequest) -> str:
    return reverse("members", args=[request.workspace.public_id])


def _by_role(queryset):
    """Owners first, then admins, members, viewers; by username within a role."""
    rank = Case(
        *(When(role=role, then=Value(n)) for n, role in enumerate(ROLE_ORDER)),
        output_field=IntegerField(),
    )
    return queryset.annotate(rank=rank).order_by("rank", "user__username")


def _members_context(request: WorkspaceRequest, invite_form: InviteForm | None = None) -> dict:
    membership = request.membership
    grantable = grantable_roles(membership.role)
    can_manage = membership.can(Permission.MANAGE_MEMBERS)
    members = list(
        _by_role(Membership.objects.filter(workspace=request.workspace).select_related("user"))
    )
    for m in members:
        # The actions this viewer may take on that member (the services check again).
        m.manageable = can_manage and m.pk != membership.pk and m.role in grantable
    pending = (
        Invitation.objects.pending().filter(workspace=request.workspace)
        .select_related("invited_by").order_by("-created_at")
        if can_manage else Invitation.objects.none()
    )
    return {
        "members": members,
        "pending": pending,
        "can_manage_members": can_manage,
        "can_delete": membership.can(Permission.DELETE_WORKSPACE),
        "can_view_audit_log": membership.can(Permission.VIEW_AUDIT_LOG),
        "grantable": [(r, Role(r).label) for r in grantable],
        "invite_form": invite_form or InviteForm(roles=grantable),
        "roles_table": roles_table(),
        "invitation_days": settings.INVITATION_MAX_AGE_DAYS,
    }


def roles_table() -> list[tuple[str, list[bool]]]:
    """Each permission's label and, per role (highest first), whether the role has it."""
    return [
        (str(permission.label), [permission in PERMISSIONS[role] for role in ROLE_ORDER])
        for permission in Permission
    ]


@workspace_view()
@require_GET
def members(request: WorkspaceRequest) -> HttpResponse:
    """Everyone in the workspace and their role; for owners and admins the forms that change them."""
    return render(request, "members/list.html", _members_context(request))


def send_invitation_email(request: HttpRequest, invitation: Invitation, token: str) -> None:
    link = _absolute(request, reverse("invite-link", args=[token]))
    body = render_to_string(
        "members/invitation_email.txt",
        {
            "invitation": invitation,
            "inviter": request.user.get_username(),
            "link": link,
            "days": settings.INVITATION_MAX_AGE_DAYS,
            "role": Role(invitation.role).label,
        },
    )
    subject = f"Join {invitation.workspace.name} on Ackly"
    send_mail(subject, body, None, [invitation.email])


def _refuse(request: WorkspaceRequest, error: MemberChangeRefused) -> HttpResponse:
    messages.error(request, str(error))
    return redirect(_members_url(request))


@workspace_view(permission=Permission.MANAGE_MEMBERS)
@require_POST
def invite(request: WorkspaceRequest) -> HttpResponse:
    """Invite an address with a role; the link goes out by email once the invitation is stored."""
    form = InviteForm(request.POST, roles=grantable_roles(request.membership.role))
    if not form.is_valid():
        return render(request, "members/list.html", _members_context(request, form), status=400)
    org_id = request.workspace.public_id
    if spent(request, "invite", fixed_key(org_id), [settings.INVITATION_RATE_LIMIT]):
        messages.error(request, TOO_MANY_INVITATIONS)
        return redirect(_members_url(request))
    try:
        invitation, token = invite_member(
            request.membership, form.cleaned_data["email"], form.cleaned_data["role"]
        )
    except MemberChangeRefused as error:
        form.add_error(None, str(error))
        return render(request, "members/list.html", _members_context(request, form), status=400)
    try:
        send_invitation_email(request, invitation, token)
    except (smtplib.SMTPException, OSError):
        logger.exception("Invitation email could not be sent")
        revoke_invitation(request.membership, invitation.public_id)  # a link nobody received
        messages.error(request, MAIL_FAILED)
        return redirect(_members_url(request))
    messages.success(request, f"Invited {invitation.email} as {Role(invitation.role).label.lower()}.")
    return redirect(_members_url(request))


@workspace_view(permission=Permission.MANAGE_MEMBERS)
@require_POST
def invitation_revoke(request: WorkspaceRequest) -> HttpResponse:
    form = InvitationForm(request.POST)
    if not form.is_valid():
        return _refuse(request, MemberChangeRefused("Choose an invitation."))
    try:
        invitation = revoke_invitation(request.membership, form.cleaned_data["invitation"])
    except MemberChangeRefused as error:
        return _refuse(request, error)
    messages.success(request, f"Revoked the invitation to {invitation.email}.")
    return redirect(_members_url(request))


def _member_named(request: WorkspaceRequest, form: MemberForm) -> Membership:
    """The named member of this workspace (never another's), or refused."""
    target = (
        Membership.objects.select_related("user")
        .filter(workspace=request.workspace, user__username=form.cleaned_data["member"])
        .first()
    )
    if target is None:
        raise MemberChangeRefused("That person is not a member of this workspace.")
    return target


@workspace_view(permission=Permission.MANAGE_MEMBERS)
@require_POST
def member_role(request: WorkspaceRequest) -> HttpResponse:
    form = RoleForm(request.POST)
    if not form.is_valid():
        return _refuse(request, MemberChangeRefused("Choose a member and one of the roles listed."))
    try:
        target = _member_named(request, form)
        changed = change_role(request.membership, target, form.cleaned_data["role"])
    except MemberChangeRefused as error:
        return _refuse(request, error)
    messages.success(
        request, f"{changed.user.get_username()} is now {Role(changed.role).label.lower()}."
    )
    return redirect(_members_url(request))


@workspace_view(permission=Permission.MANAGE_MEMBERS)
@require_POST
def member_remove(request: WorkspaceRequest) -> HttpResponse:
    form = MemberForm(request.POST)
    if not form.is_valid():
        return _refuse(request, MemberChangeRefused("Choose a member."))
    try:
        target = _member_named(request, form)
        remove_member(request.membership, target)
    except MemberChangeRefused as error:
        return _refuse(request, error)
    messages.success(request, f"Removed {target.user.get_username()} from the workspace.")
    return redirect(_members_url(request))


@workspace_view()
@require_POST
def leave(request: WorkspaceRequest) -> HttpResponse:
    """Any member may leave (a viewer too: it changes only their own access); not the last owner."""
    try:
        leave_workspace(request.membership)
    except MemberChangeRefused as error:
        return _refuse(request, error)
    messages.success(request, f"You left {request.workspace.name}.")
    return redirect("home")


@workspace_view(permission=Permission.DELETE_WORKSPACE)
@require_http_methods(["GET", "POST"])
def workspace_delete(request: WorkspaceRequest) -> HttpResponse:
    """Delete the workspace and everything in it, once its name is typed; owners only."""
    form = DeleteWorkspaceForm(request.POST if request.method == "POST" else None)
    if request.method == "POST" and form.is_valid():
        try:
            delete_workspace(request.membership, form.cleaned_data["name"])
        except MemberChangeRefused as error:
            form.add_error("name", str(error))
        else:
            messages.success(request, f"Deleted the workspace {request.workspace.name}.")
            return redirect("home")
    status = 400 if request.method == "POST" else 200
    return render(request, "members/delete.html", {"form": form}, status=status)


@workspace_view(permission=Permission.VIEW_AUDIT_LOG)
@require_GET
def audit_log(request: WorkspaceRequest) -> HttpResponse:
    """Who changed what in the workspace, newest first, a page at a time."""
    entries = AuditEntry.objects.for_workspace(request.workspace).newest_first()
    page = Paginator(entries, AUDIT_PAGE_SIZE).get_page(request.GET.get("page"))
    return render(request, "members/audit.html", {"page": page})


# --- The invitation link --------------------------------------------------------------------


def _unusable(request: HttpRequest, error: InvitationUnusable) -> HttpResponse:
    return _refused_link(request, error.title, error.message, 410)


def _not_valid(request: HttpRequest) -> HttpResponse:
    return _refused_link(
        request,
        "This invitation link is not valid",
        "It may have been cut short by your email program. Copy the whole link from the email, "
        "or ask for a new invitation.",
        400,
    )


def invite_link(request: HttpRequest, token: str) -> HttpResponse:
    """The emailed link: keeps its token in the session and redirects to the token-free page."""
    invitation = find_invitation(token)
    if invitation is None:
        return _not_valid(request)
    try:
        check_usable(invitation)
    except InvitationUnusable as error:
        return _unusable(request, error)
    request.session[INVITE_SESSION_TOKEN] = token
    return redirect("invite-accept")


def _session_invitation(request: HttpRequest) -> Invitation | HttpResponse:
    """The usable invitation whose link this browser opened, or the page saying why not."""
    token = request.session.get(INVITE_SESSION_TOKEN)
    if not token:
        return _refused_link(
            request,
            "Open the link from your email",
            "This page continues the invitation your email's link opened. Open that link again, "
            "in this browser.",
            400,
        )
    invitation = find_invitation(token)
    if invitation is None:
        return _not_valid(request)
    try:
        check_usable(invitation)
    except InvitationUnusable as error:
        request.session.pop(INVITE_SESSION_TOKEN, None)
        return _unusable(request, error)
    return invitation


def _invite_page(request: HttpRequest, invitation: Invitation, form=None, **extra) -> HttpResponse:
    status = extra.pop("status", 200)
    context = {
        "invitation": invitation,
        "role": Role(invitation.role).label,
        "has_account": _email_taken(invitation.email),
        "form": form or FinishSignupForm(email=invitation.email, with_workspace=False),
        **extra,
    }
    return render(request, "members/invite.html", context, status=status)


def _joined(request: HttpRequest, membership: Membership) -> HttpResponse:
    request.session.pop(INVITE_SESSION_TOKEN, None)
    messages.success(request, f"You joined {membership.workspace.name}.")
    return redirect("live-events", org_id=membership.workspace.public_id)


@require_http_methods(["GET", "POST"])
def invite_accept(request: HttpRequest) -> HttpResponse:
    """The invitation: accept it signed in, or log in or sign up first."""
    invitation = _session_invitation(request)
    if isinstance(invitation, HttpResponse):
        return invitation
    if request.method != "POST":
        return _invite_page(request, invitation)
    if not request.user.is_authenticated:
        return redirect(f"{reverse('login')}?next={reverse('invite-accept')}")
    try:
        membership = accept_invitation(invitation, request.user)
    except InvitationUnusable as error:
        request.session.pop(INVITE_SESSION_TOKEN, None)
        return _unusable(request, error)
    return _joined(request, membership)


@require_POST
def invite_signup(request: HttpRequest) -> HttpResponse:
    """A new account from the invitation: sign-up's own form and account creation, then joined.

    The emailed link proves the address, as sign-up's link does; the account and the membership
    are made in one transaction, so a failure leaves neither.
    """
    invitation = _session_invitation(request)
    if isinstance(invitation, HttpResponse):
        return invitation
    if request.user.is_authenticated:
        return redirect("invite-accept")
    if spent(request, "signup-finish", "ip", [settings.SIGNUP_FINISH_RATE_LIMIT]):
        return _invite_page(request, invitation, throttled=TOO_MANY_SIGN_UPS, status=429)
    form = FinishSignupForm(request.POST, email=invitation.email, with_workspace=False)
    if not form.is_valid():
        return _invite_page(request, invitation, form, status=400)
    joined: list[Membership] = []

    def join(user):
        joined.append(accept_invitation(invitation, user))
        return joined[0].workspace

    try:
        workspace = create_account(form, join=join)
    except EmailTaken:
        return _invite_page(request, invitation, form, status=409)
    except InvitationUnusable as error:
        request.session.pop(INVITE_SESSION_TOKEN, None)
        return _unusable(request, error)
    if workspace is None:
        return _invite_page(request, invitation, form, status=400)
    login(request, form.instance, backend=MODEL_BACKEND)
    response = _joined(request, joined[0])
    remember_device(response, form.instance)
    return response
