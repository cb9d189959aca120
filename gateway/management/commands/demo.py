"""`manage.py demo`: prepare the demo tenant, routes and prices, and print a fresh API key."""

from __future__ import annotations

import os
from typing import Any

from django.conf import settings
from django.core.management.base import CommandParser

from config.command import OperatorCommand
from gateway.services import demo_prepare


class Command(OperatorCommand):
    help = "Create whatever of the demo is missing (tenant, mock provider, routes, prices) and issue a fresh demo key."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--mock-url", default=settings.TOLLHOUSE_MOCK_URL, help="Base URL of the mock provider."
        )
        parser.add_argument(
            "--key-only", action="store_true", help="Print only the new API key (for scripts)."
        )
        parser.add_argument("--gateway-url", default=f"http://127.0.0.1:{os.environ.get('PORT', '8000')}")

    def handle(self, *args: Any, **options: Any) -> None:
        demo = demo_prepare(mock_url=options["mock_url"])
        if options["key_only"]:
            if demo.admin_password:
                # stdout is the key alone (scripts read it); the one-time password still gets said.
                self.stderr.write(
                    f"Created the admin user 'admin' with password {demo.admin_password} (shown once)."
                )
            if demo.owner_password:
                self.stderr.write(
                    f"Console: {demo.owner_email} with password {demo.owner_password} (shown once)."
                )
            self.stdout.write(demo.raw_key)
            return
        url = options["gateway_url"].rstrip("/")
        admin_line = (
            f"  user admin, password {demo.admin_password}  (shown once)"
            if demo.admin_password
            else "  user admin (password as set before; reset with: python manage.py changepassword admin)"
        )
        owner_line = (
            f"  email {demo.owner_email}, password {demo.owner_password}  (shown once)"
            if demo.owner_password
            else f"  email {demo.owner_email} (password as set before; reset with: "
            f"python manage.py changepassword {demo.owner_email})"
        )
        real = ", ".join(demo.real_providers) or (
            "none (set OPENAI_API_KEY / DEEPSEEK_API_KEY / ANTHROPIC_API_KEY / GEMINI_API_KEY to add them)"
        )
        self.stdout.write(
            f"""
Tollhouse demo is ready.

  API key (shown once): {demo.raw_key}
  Models: the default catalog's (gateway/catalog.toml) at their list prices, e.g. gpt-4.1 (alias gpt4),
  gpt-5, claude-sonnet-4.5, gemini-2.5-flash, deepseek-v3.2; GET {url}/v1/models lists them all.
  Served by the bundled mock provider at {options["mock_url"]} (Claude models in Anthropic's wire
  format, Gemini models in Gemini's, the others in OpenAI's); real providers registered: {real}

Console (keys, spend, budgets, usage of the demo tenant): {url}/login/
{owner_line}

Admin (operator: providers, prices, tenants): {url}/admin/
{admin_line}

Try it:

  curl {url}/v1/chat/completions -H "Authorization: Bearer {demo.raw_key}" \\
       -H "Content-Type: application/json" \\
       -d '{{"model": "gpt-4.1", "messages": [{{"role": "user", "content": "Hello!"}}]}}'

  from openai import OpenAI
  client = OpenAI(base_url="{url}/v1", api_key="{demo.raw_key}")
  reply = client.chat.completions.create(model="gpt-4.1", messages=[{{"role": "user", "content": "Hello!"}}])
  print(reply.choices[0].message.content, reply.usage)
  for chunk in client.chat.completions.create(model="gpt-4.1", messages=[{{"role": "user", "content": "Hi"}}], stream=True): print(chunk.choices[0].delta.content if chunk.choices else "", end="")
"""
        )
