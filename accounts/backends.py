"""Sign in with a username or an email address (the console asks for "email"; the admin's users
have usernames). An email matches only when exactly one account has it."""

from __future__ import annotations

from typing import Any

from django.contrib.auth import get_user_model
from django.contrib.auth.backends import ModelBackend
from django.http import HttpRequest


class EmailOrUsernameBackend(ModelBackend):
    def authenticate(
        self,
        request: HttpRequest | None,
        username: str | None = None,
        password: str | None = None,
        **kwargs: Any,
    ) -> Any:
        if username is None or password is None or "\x00" in username or len(username) > 254:
            return None
        User = get_user_model()
        user = User._default_manager.filter(username=username).first()
        if user is None and "@" in username:
            matches = list(User._default_manager.filter(email__iexact=username)[:2])
            user = matches[0] if len(matches) == 1 else None
        if user is None:
            User().set_password(password)  # the same work as a real check: no timing difference
            return None
        if user.check_password(password) and self.user_can_authenticate(user):
            return user
        return None
