"""config/egress.py: where Tollhouse may send a request someone addressed (budget webhooks). DNS is
answered by a stand-in for `socket.getaddrinfo`, the module's one boundary with the outside; the
connections are real, to a local receiver."""

from __future__ import annotations

from ipaddress import ip_network

import pytest

from config import egress
from tests.support.dns import fake_dns
from tests.support.webhooks import LOOPBACK, Receiver


@pytest.mark.parametrize(
    ("url", "sentence"),
    [
        ("http://127.0.0.1:6379/", "127.0.0.1 is a loopback address"),
        ("http://[::1]/", "::1 is a loopback address"),
        ("http://169.254.169.254/latest/meta-data/", "169.254.169.254 is a link-local address"),
        ("http://[fe80::1]/", "fe80::1 is a link-local address"),
        ("https://10.0.0.1/", "10.0.0.1 is a private address"),
        ("https://172.16.5.4/", "172.16.5.4 is a private address"),
        ("https://192.168.1.1/", "192.168.1.1 is a private address"),
        ("https://[fd00::1]/", "fd00::1 is a private address"),
        ("https://100.64.0.1/", "100.64.0.1 is a non-public address"),
        ("https://224.0.0.1/", "224.0.0.1 is a multicast address"),
        ("https://0.0.0.0/", "0.0.0.0 is an unspecified address"),
        ("https://240.0.0.1/", "240.0.0.1 is a reserved address"),
        ("https://[::ffff:127.0.0.1]/", "::ffff:127.0.0.1 is a loopback address"),
    ],
)
def test_it_refuses_an_address_that_is_not_public(url, sentence):
    refusal = egress.url_refusal(url)
    assert (
        refusal
        == f"{sentence}: webhooks go only to public addresses unless TOLLHOUSE_WEBHOOK_ALLOW lists it."
    )


@pytest.mark.parametrize("url", ["https://93.184.215.14/hook", "https://[2606:4700:4700::1111]:8443/x"])
def test_it_lets_a_public_address_through(url):
    assert egress.url_refusal(url) is None


def test_it_resolves_a_name_and_refuses_it_if_any_address_is_not_public(monkeypatch):
    fake_dns(
        monkeypatch, {"hooks.acme.test": ["93.184.215.14", "10.9.8.7"], "ok.acme.test": ["93.184.215.14"]}
    )
    assert egress.url_refusal("https://hooks.acme.test/x") == (
        "hooks.acme.test resolves to a private address (10.9.8.7): webhooks go only to public addresses "
        "unless TOLLHOUSE_WEBHOOK_ALLOW lists it."
    )
    assert egress.url_refusal("https://ok.acme.test/x") is None


def test_a_name_that_does_not_resolve_yet_is_left_to_the_check_when_sending(monkeypatch):
    asked = fake_dns(monkeypatch, {})
    assert egress.url_refusal("https://hooks.acme.test/x") is None
    assert asked == ["hooks.acme.test"]


def test_the_operator_allows_ranges_by_setting(settings):
    settings.TOLLHOUSE_WEBHOOK_ALLOW = (ip_network("10.20.0.0/16"), ip_network("::1/128"))
    assert egress.url_refusal("http://10.20.1.2/") is None
    assert egress.url_refusal("http://[::1]/") is None
    assert egress.url_refusal("http://10.21.1.2/") is not None
    assert egress.url_refusal("http://127.0.0.1/") is not None


def post(url: str) -> egress.Answer:
    return egress.post(url, body=b"{}", headers={"Content-Type": "application/json"}, timeout=5)


def test_it_sends_to_the_address_it_checked_with_the_name_as_host(monkeypatch, settings):
    settings.TOLLHOUSE_WEBHOOK_ALLOW = LOOPBACK
    with Receiver([204]) as receiver:
        port = receiver.server.server_address[1]
        asked = fake_dns(monkeypatch, {"hooks.acme.test": ["127.0.0.1"]})
        assert post(f"http://hooks.acme.test:{port}/budget").status == 204
    # One lookup, and the connection went to its answer: no second lookup that could answer otherwise.
    assert asked == ["hooks.acme.test"]
    [(headers, body)] = receiver.received
    assert headers["host"] == f"hooks.acme.test:{port}" and body == b"{}"


@pytest.mark.parametrize("answer", ["127.0.0.1", "10.0.0.5", "169.254.169.254"])
def test_it_refuses_to_send_when_the_name_now_resolves_to_a_private_address(monkeypatch, answer):
    with Receiver([204]) as receiver:
        port = receiver.server.server_address[1]
        fake_dns(monkeypatch, {"hooks.acme.test": [answer]})
        with pytest.raises(egress.EgressRefused) as refused:
            post(f"http://hooks.acme.test:{port}/budget")
    assert str(refused.value).startswith("hooks.acme.test resolves to a ")
    assert f"({answer})" in str(refused.value)
    assert receiver.received == []


def test_it_refuses_to_send_to_a_loopback_literal_unless_allowed(settings):
    with Receiver([204]) as receiver:
        with pytest.raises(egress.EgressRefused):
            post(receiver.url)
        assert receiver.received == []
        settings.TOLLHOUSE_WEBHOOK_ALLOW = LOOPBACK
        assert post(receiver.url).status == 204
    assert len(receiver.received) == 1


def test_a_name_that_does_not_resolve_when_sending_is_a_connect_error(monkeypatch):
    fake_dns(monkeypatch, {})
    with pytest.raises(egress.SEND_ERRORS) as failed:
        post("http://hooks.acme.test/budget")
    assert "hooks.acme.test does not resolve" in str(failed.value)


def test_it_follows_no_redirect(settings):
    settings.TOLLHOUSE_WEBHOOK_ALLOW = LOOPBACK
    with Receiver([302]) as receiver:
        assert post(receiver.url).status == 302
    assert len(receiver.received) == 1
