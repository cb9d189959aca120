"""Requests that are not API calls still get OpenAI-shaped answers, never an HTML page or a 500."""

import logging

import httpx
import pytest

pytestmark = pytest.mark.django_db(transaction=True)


def test_it_answers_an_unknown_v1_route_with_a_json_404(gateway_server, world):
    response = httpx.post(
        gateway_server + "/v1/completions/legacy", headers={"Authorization": f"Bearer {world.key}"}
    )
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "unknown_url"


def test_it_answers_a_wrong_method_with_a_json_405(gateway_server, world):
    response = httpx.get(
        gateway_server + "/v1/chat/completions", headers={"Authorization": f"Bearer {world.key}"}
    )
    assert response.status_code == 405
    assert set(response.json()["error"]) == {"message", "type", "param", "code"}


def test_it_answers_a_non_object_body_with_400(gateway_server, world, usage_rows):
    response = httpx.post(
        gateway_server + "/v1/chat/completions",
        headers={"Authorization": f"Bearer {world.key}"},
        content=b"[1, 2, 3]",
    )
    assert response.status_code == 400
    assert [row.status for row in usage_rows(1)] == [400]


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"messages": [{"role": "user", "content": "hi"}]}, "model"),
        ({"model": "m" * 201, "messages": [{"role": "user", "content": "hi"}]}, "model"),
        ({"model": "gpt-4.1", "messages": [{"content": "no role"}]}, "messages[0]"),
        ({"model": "gpt-4.1", "messages": [{"role": "user", "content": "hi"}], "stream": "yes"}, "stream"),
        (
            {"model": "gpt-4.1", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 0},
            "max_tokens",
        ),
    ],
)
def test_it_names_the_bad_parameter(gateway_server, world, body, param):
    response = httpx.post(
        gateway_server + "/v1/chat/completions", headers={"Authorization": f"Bearer {world.key}"}, json=body
    )
    assert response.status_code == 400
    assert response.json()["error"]["param"] == param


def test_it_serves_health(gateway_server):
    assert httpx.get(gateway_server + "/healthz").json() == {"status": "ok"}


@pytest.mark.parametrize(
    ("method", "path", "allowed"),
    [
        ("OPTIONS", "/v1/chat/completions", "POST"),
        ("PUT", "/v1/chat/completions", "POST"),
        ("DELETE", "/v1/embeddings", "POST"),
        ("HEAD", "/v1/embeddings", "POST"),
        ("POST", "/v1/models", "GET"),
        ("PATCH", "/v1/models", "GET"),
    ],
)
def test_it_answers_other_methods_with_405_and_allow(
    gateway_server, world, method, path, allowed, usage_rows
):
    response = httpx.request(method, gateway_server + path, headers={"Authorization": f"Bearer {world.key}"})
    assert response.status_code == 405
    assert response.headers["Allow"] == allowed
    if method != "HEAD":
        assert response.json()["error"]["code"] == "method_not_allowed"
    assert usage_rows(0, settle=0.1) == []


@pytest.mark.parametrize(
    "path",
    [
        "/static/..%2fconfig%2fsettings.py",
        "/static/../config/settings.py",
        "/static/%2e%2e/manage.py",
        "/static/a%00b",
    ],
)
def test_it_answers_a_static_path_outside_the_static_files_with_404(gateway_server, path):
    response = httpx.get(gateway_server + path)
    assert response.status_code == 404
    assert b"SECRET" not in response.content and b"Traceback" not in response.content


def test_it_answers_an_oversized_header_with_431_and_keeps_serving(gateway_server, world, settings):
    huge = "x" * (settings.TOLLHOUSE_MAX_HEADER_BYTES + 1)
    response = httpx.post(
        gateway_server + "/v1/chat/completions",
        headers={"Authorization": f"Bearer {world.key}", "X-Padding": huge},
        json={"model": "gpt-4.1", "messages": [{"role": "user", "content": "hi"}]},
    )
    assert response.status_code == 431
    assert response.json()["error"]["code"] == "request_headers_too_large"
    # Headers just under the cap, and a large body, are fine.
    ok = httpx.post(
        gateway_server + "/v1/chat/completions",
        headers={"Authorization": f"Bearer {world.key}", "X-Padding": "y" * 30_000},
        json={"model": "gpt-4.1", "messages": [{"role": "user", "content": "z" * 2_000_000}]},
    )
    assert ok.status_code == 200


def test_models_applies_the_ip_allow_list(gateway_server, world):
    from accounts.services import api_key_issue

    fenced = api_key_issue(tenant=world.acme, name="fenced", allowed_ips=["10.0.0.0/8"]).raw
    response = httpx.get(
        gateway_server + "/v1/models",
        headers={"Authorization": f"Bearer {fenced}", "X-Forwarded-For": "10.1.1.1"},
    )
    assert response.status_code == 403 and response.json()["error"]["code"] == "ip_not_allowed"


def test_a_spoofed_forwarded_for_does_not_pass_the_allow_list(gateway_server, world, usage_rows):
    from accounts.services import api_key_issue

    fenced = api_key_issue(tenant=world.acme, name="fenced", allowed_ips=["10.0.0.0/8"]).raw
    response = httpx.post(
        gateway_server + "/v1/chat/completions",
        headers={"Authorization": f"Bearer {fenced}", "X-Forwarded-For": "10.1.1.1"},
        json={"model": "gpt-4.1", "messages": [{"role": "user", "content": "hi"}]},
    )
    assert response.status_code == 403
    [row] = usage_rows(1)
    assert row.client_ip == "127.0.0.1"


def test_a_forwarded_for_from_a_trusted_proxy_decides_the_address(
    gateway_server, world, usage_rows, settings
):
    from ipaddress import ip_network

    from accounts.services import api_key_issue

    settings.TOLLHOUSE_TRUSTED_PROXIES = (ip_network("127.0.0.1/32"),)
    fenced = api_key_issue(tenant=world.acme, name="fenced", allowed_ips=["10.0.0.0/8"]).raw
    headers = {"Authorization": f"Bearer {fenced}"}
    body = {"model": "gpt-4.1", "messages": [{"role": "user", "content": "hi"}]}
    inside = httpx.post(
        gateway_server + "/v1/chat/completions", headers={**headers, "X-Forwarded-For": "10.1.1.1"}, json=body
    )
    garbage = httpx.post(
        gateway_server + "/v1/chat/completions",
        headers={**headers, "X-Forwarded-For": "not-an-ip"},
        json=body,
    )
    assert (inside.status_code, garbage.status_code) == (200, 403)
    assert sorted(str(row.client_ip) for row in usage_rows(2)) == ["10.1.1.1", "127.0.0.1"]


def test_an_upstream_error_that_quotes_the_credential_reaches_no_client_and_no_log(
    gateway_server, world, caplog
):
    from tests.conftest import UPSTREAM_SECRET

    with caplog.at_level(logging.DEBUG):
        response = httpx.post(
            gateway_server + "/v1/chat/completions",
            headers={"Authorization": f"Bearer {world.key}"},
            json={
                "model": "gpt-4.1",
                "messages": [{"role": "user", "content": "[mock status=400 echo_credential]"}],
            },
        )
    assert response.status_code == 400
    assert "rejected the request" in response.json()["error"]["message"]
    assert UPSTREAM_SECRET not in response.text and UPSTREAM_SECRET[:12] not in response.text
    assert UPSTREAM_SECRET not in caplog.text


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/v1/chat/completions", {"messages": [{"role": "user", "content": "[mock echo_credential]"}]}),
        (
            "/v1/chat/completions",
            {"messages": [{"role": "user", "content": "[mock echo_credential tokens=3]"}], "stream": True},
        ),
        ("/v1/embeddings", {"model": "text-embedding-3-small", "input": "[mock echo_credential]"}),
    ],
    ids=["json", "stream", "embeddings"],
)
def test_a_200_answer_that_quotes_the_credential_is_redacted_for_the_client_the_ledger_and_the_body_log(
    gateway_server, world, usage_rows, path, body
):
    import time

    from accounts.services import tenant_save
    from gateway.models import BodyLog
    from tests.conftest import UPSTREAM_SECRET

    world.acme.body_logging = True
    tenant_save(tenant=world.acme)
    response = httpx.post(
        gateway_server + path,
        headers={"Authorization": f"Bearer {world.key}"},
        json={"model": "gpt-4.1", **body},
    )
    assert response.status_code == 200
    assert UPSTREAM_SECRET not in response.text
    assert "the request carried the credential [redacted]" in response.text
    [row] = usage_rows(1)
    assert row.status == 200 and UPSTREAM_SECRET not in row.served_model
    deadline = time.monotonic() + 5
    while not (logged := BodyLog.objects.first()) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert logged is not None and "[redacted]" in logged.response_body
    assert UPSTREAM_SECRET not in logged.response_body


def test_it_answers_431_to_an_oversized_head_sent_in_one_write(gateway_server, settings):
    import socket
    from urllib.parse import urlsplit

    port = urlsplit(gateway_server).port
    head = b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nX-Pad: " + b"a" * (
        settings.TOLLHOUSE_MAX_HEADER_BYTES + 10
    )
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(head + b"\r\nContent-Length: 2\r\n\r\n{}")
        answer = sock.recv(200)
    assert answer.startswith(b"HTTP/1.1 431")


def test_a_large_body_sent_with_its_head_in_one_write_is_not_a_large_head(gateway_server, world):
    import socket
    from urllib.parse import urlsplit

    body = b'{"model": "text-embedding-3-small", "input": "' + b"x" * 200_000 + b'"}'
    head = (
        b"POST /v1/embeddings HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Authorization: Bearer " + world.key.encode() + b"\r\n"
        b"Content-Length: " + str(len(body)).encode() + b"\r\nConnection: close\r\n\r\n"
    )
    with socket.create_connection(("127.0.0.1", urlsplit(gateway_server).port), timeout=10) as sock:
        sock.sendall(head + body)
        answer = sock.recv(200)
    assert answer.startswith(b"HTTP/1.1 200")


def test_every_v1_answer_names_the_one_method_its_route_answers(gateway_server, world):
    auth = {"Authorization": f"Bearer {world.key}"}
    chat = {"model": "gpt-4.1", "messages": [{"role": "user", "content": "hi"}]}
    answers = {
        "models 200": (httpx.get(gateway_server + "/v1/models", headers=auth), "GET"),
        "models 401": (httpx.get(gateway_server + "/v1/models"), "GET"),
        "chat 200": (httpx.post(gateway_server + "/v1/chat/completions", headers=auth, json=chat), "POST"),
        "chat 400": (httpx.post(gateway_server + "/v1/chat/completions", headers=auth, json={}), "POST"),
        "chat OPTIONS": (httpx.options(gateway_server + "/v1/chat/completions", headers=auth), "POST"),
        "embeddings 200": (
            httpx.post(
                gateway_server + "/v1/embeddings",
                headers=auth,
                json={"model": "text-embedding-3-small", "input": "hi"},
            ),
            "POST",
        ),
    }
    for name, (response, method) in answers.items():
        # OPTIONS is refused (405), so no answer may offer it.
        assert response.headers.get("Allow", method) == method, (name, response.headers.get("Allow"))
    assert answers["chat OPTIONS"][0].status_code == 405
    assert answers["models 200"][0].status_code == 200 and answers["chat 200"][0].status_code == 200
