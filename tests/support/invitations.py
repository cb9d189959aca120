"""Helpers for tests that follow an invitation email: the accept link in a message, and its token."""

from __future__ import annotations

import re
from typing import Any

from django.core import mail

LINK = re.compile(r"https?://[^\s\"<>]+/invitations/([A-Za-z0-9_-]+)/")


def invitation_link(message: Any = None) -> tuple[str, str]:
    """(accept URL, token) from `message` (default: the last email sent). Both the text and the HTML
    part carry the same link."""
    message = message or mail.outbox[-1]
    found = LINK.search(message.body)
    assert found, f"no invitation link in {message.body!r}"
    html = message.alternatives[0][0]
    assert found.group(0) in html
    return found.group(0), found.group(1)
