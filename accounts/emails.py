"""Emails the accounts app sends, each three templates under templates/accounts/email/: `<name>_subject.txt`,
`<name>.txt` and `<name>.html`, assembled here (the same shape as billing's alert emails)."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.mail import EmailMultiAlternatives
from django.template.loader import render_to_string


def email_render(name: str, context: dict[str, Any]) -> tuple[str, str, str]:
    """(subject, plain text, HTML) of templates/accounts/email/<name>*."""
    subject = render_to_string(f"accounts/email/{name}_subject.txt", context)
    text = render_to_string(f"accounts/email/{name}.txt", context)
    html = render_to_string(f"accounts/email/{name}.html", context)
    # A header is one line, whatever a tenant's name holds.
    return " ".join(subject.split()), text, html


def email_send(name: str, context: dict[str, Any], *, to: str) -> None:
    """Send one email to one address; SMTP errors (smtplib.SMTPException, OSError) reach the caller."""
    subject, text, html = email_render(name, context)
    message = EmailMultiAlternatives(subject, text, settings.DEFAULT_FROM_EMAIL, [to])
    message.attach_alternative(html, "text/html")
    message.send()
