"""Requests that are not API calls still get OpenAI-shaped answers, never an HTML page or a 500."""

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
