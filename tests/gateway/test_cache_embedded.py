"""The response cache in the embedded default (no DATABASE_URL, no REDIS_URL): entries live in the
gateway process (gateway.cache.LocalStore), turned on per key with `key_issue --cache`."""

from __future__ import annotations

import httpx

from tests.e2e.test_governance_embedded import embedded  # noqa: F401 - the fixture


def ask(gateway, key: str, path: str, body: dict, **headers: str) -> httpx.Response:
    return httpx.post(
        gateway.url + path,
        json=body,
        headers={"Authorization": f"Bearer {key}", "anthropic-version": "2023-06-01", **headers},
        timeout=10,
    )


def test_it_answers_repeated_calls_from_the_process_without_redis(embedded):  # noqa: F811
    gateway, manage = embedded
    key = manage("key_issue", "--tenant", "demo", "--name", "cached", "--cache").splitlines()[-1]
    plain = manage("key_issue", "--tenant", "demo", "--name", "plain").splitlines()[-1]
    chat = {
        "model": "gpt-4.1",
        "max_tokens": 40,
        "messages": [{"role": "user", "content": "Hi [mock tokens=6]"}],
    }

    first = ask(gateway, key, "/v1/chat/completions", chat)
    second = ask(gateway, key, "/v1/chat/completions", chat)
    assert (first.headers["x-tollhouse-cache"], second.headers["x-tollhouse-cache"]) == ("miss", "hit")
    text = first.json()["choices"][0]["message"]["content"]
    assert second.json()["choices"][0]["message"]["content"] == text

    # The same question in Anthropic's dialect, streamed: the same entry, replayed as events.
    streamed = ask(gateway, key, "/v1/messages", {**chat, "stream": True})
    assert streamed.headers["x-tollhouse-cache"] == "hit"
    assert streamed.text.startswith("event: message_start") and "event: message_stop" in streamed.text

    # Off by header, and never for a key that did not opt in (unless the call asks).
    assert (
        ask(gateway, key, "/v1/chat/completions", chat, **{"x-tollhouse-cache": "off"}).headers.get(
            "x-tollhouse-cache"
        )
        is None
    )
    assert "x-tollhouse-cache" not in ask(gateway, plain, "/v1/chat/completions", chat).headers
    # Entries are the tenant's: another of its keys that asks for the cache finds the same one.
    on = ask(gateway, plain, "/v1/chat/completions", chat, **{"x-tollhouse-cache": "on"})
    assert on.headers["x-tollhouse-cache"] == "hit"
    bad = ask(gateway, key, "/v1/chat/completions", chat, **{"x-tollhouse-cache-ttl": "soon"})
    assert bad.status_code == 400 and bad.json()["error"]["param"] == "x-tollhouse-cache-ttl"
    assert "Traceback" not in gateway.log()
