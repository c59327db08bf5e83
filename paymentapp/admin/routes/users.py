"""Dashboard users (owners only): add one, change a role, disable or enable, sign out
everywhere. The rules (always one enabled owner; changes apply on the next request) are
in `admin/users.py`, shared with `flask admin`."""

from __future__ import annotations

from flask import flash, redirect, render_template, request, url_for

from ...errors import NotFound, ValidationError
from ...models import Role
from .. import bp, users
from ..auth import requires
from .actions import attempt, form_state, form_text


@bp.route("/users", methods=["GET", "POST"])
@requires(Role.OWNER)
def users_page():
    """The users, and a form that adds one."""
    form = None
    if request.method == "POST":
        values = {"username": form_text("username"), "role": form_text("role")}

        def add():
            role = users.parse_role(values["role"])
            username = users.check_username(values["username"])
            if users.find_user(username) is not None:
                raise ValidationError(
                    f"{username} already exists: change their role below.",
                    code="user_exists",
                    fields={"username": "Already a dashboard user."},
                )
            return users.set_password(username, request.form.get("password", ""), role)[0]

        user = attempt(add, refused=lambda exc: _page(form_state(values, exc.fields, exc.message)))
        flash(f"{user.username} added as {user.role}.", "ok")
        return redirect(url_for("admin.users_page"))
    return _page(form)


def _page(form):
    listed = users.list_users()
    page = render_template("admin/users.html", users=listed, roles=users.ROLES, form=form)
    return page, (422 if form else 200)


@bp.post("/users/<int:user_id>/<action>")
@requires(Role.OWNER)
def change_user(user_id: int, action: str):
    """Change a role, disable, enable, or sign out everywhere."""
    back = url_for("admin.users_page")
    if action == "role":
        user = attempt(
            lambda: users.change_role(user_id, users.parse_role(form_text("role"))), back
        )
        done = f"{user.username} is now {user.role}."
    elif action in ("disable", "enable"):
        user = attempt(lambda: users.set_disabled(user_id, action == "disable"), back)
        done = f"{user.username} is {action}d."
    elif action == "sign-out":
        user = attempt(lambda: users.sign_out_everywhere(user_id), back)
        done = f"{user.username} is signed out everywhere."
    else:
        raise NotFound("Nothing lives at this address.", code="not_found")
    flash(done, "ok")
    return redirect(back)
