"""AccountService: the accounts part as its callers see it, one object built in app.py.

The work is done by its parts, one module each: users.py (users, password sign-in and its throttling),
invites.py (sign-up, invitations, the first-admin setup link), tokens.py (API tokens), sessions.py (web
sessions), orgs.py (organizations, members, roles) and group_roles.py (IdP groups to org roles). The facade only builds them and names their methods,
so a caller needs one object and a reader finds each method in the module of its subject.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable

from ..config import AccountSettings
from ..db import Database
from .credentials import CallerCache
from .group_roles import GroupRoles
from .invites import Invites
from .orgs import Orgs
from .sessions import Sessions
from .tokens import Tokens
from .users import Users


class AccountService:
    def __init__(self, db: Database, settings: AccountSettings, change_stamp: Callable[[], Hashable] | None = None):
        """`change_stamp`: see CallerCache; with it, the callers behind tokens and sessions are cached while it
        stays the same."""
        self.db = db
        self.settings = settings
        self.callers = CallerCache(change_stamp)
        self.users = Users(db, settings)
        self.orgs = Orgs(db, self.users, self.callers)
        self.invites = Invites(db, settings, self.users, self.orgs)
        self.tokens = Tokens(db, settings, self.users, self.orgs, self.callers)
        self.sessions = Sessions(db, settings, self.users, self.callers)
        self.group_roles = GroupRoles(db)  # IdP group names -> org roles (SCIM, SSO)
        self.login_by_ip = self.users.login_by_ip
        self.login_failures = self.users.login_failures
        self.token_by_ip = self.tokens.token_by_ip

        users, invites, tokens, sessions, orgs = self.users, self.invites, self.tokens, self.sessions, self.orgs
        self.create_user = users.create_user
        self.get_user = users.get_user
        self.find_user = users.find_user
        self.list_users = users.list_users
        self.user_count = users.user_count
        self.login = users.login
        self.principal_for_user = users.principal_for_user

        self.signup = invites.signup
        self.create_invite = invites.create_invite
        self.create_setup_link_if_fresh = invites.create_setup_link_if_fresh
        self.complete_setup = invites.complete_setup

        self.create_token = tokens.create_token
        self.list_tokens = tokens.list_tokens
        self.revoke_token = tokens.revoke_token
        self.principal_for_token = tokens.principal_for_token

        self.start_session = sessions.start_session
        self.principal_for_session = sessions.principal_for_session
        self.end_session = sessions.end_session

        self.create_org = orgs.create_org
        self.get_org = orgs.get_org
        self.visible_org = orgs.visible_org
        self.orgs_of = orgs.orgs_of
        self.members = orgs.members
        self.set_member = orgs.set_member
        self.remove_member = orgs.remove_member

    @property
    def change_stamp(self) -> Callable[[], Hashable]:
        return self.callers.change_stamp

    @change_stamp.setter
    def change_stamp(self, stamp: Callable[[], Hashable]) -> None:
        self.callers.change_stamp = stamp
