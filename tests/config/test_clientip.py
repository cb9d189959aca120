"""config.clientip: the one client address, from the socket peer and TOLLHOUSE_TRUSTED_PROXIES."""

from ipaddress import ip_address, ip_network

import pytest
from hypothesis import given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from config.clientip import forwarded_scheme, resolve


@pytest.fixture
def behind_proxy(settings):
    settings.TOLLHOUSE_TRUSTED_PROXIES = (ip_network("10.0.0.0/8"), ip_network("127.0.0.1/32"))


def test_it_ignores_forwarded_for_without_trusted_proxies(settings):
    settings.TOLLHOUSE_TRUSTED_PROXIES = ()
    assert resolve("127.0.0.1", "10.1.1.1") == "127.0.0.1"


def test_it_ignores_forwarded_for_from_an_untrusted_peer(behind_proxy):
    assert resolve("203.0.113.9", "10.1.1.1") == "203.0.113.9"


def test_it_takes_the_first_untrusted_hop_from_the_right(behind_proxy):
    # The client prepended 1.2.3.4 itself; the proxy appended what it saw.
    assert resolve("10.0.0.2", "1.2.3.4, 198.51.100.7, 10.0.0.9") == "198.51.100.7"


def test_it_stops_at_garbage_a_trusted_proxy_passed_on(behind_proxy):
    assert resolve("10.0.0.2", "198.51.100.7, not-an-ip") == "10.0.0.2"


def test_it_unwraps_ipv4_mapped_addresses(settings):
    settings.TOLLHOUSE_TRUSTED_PROXIES = ()
    assert resolve("::ffff:192.0.2.1", None) == "192.0.2.1"


@pytest.mark.parametrize("peer", [None, "", "not-an-ip", "1.2.3.4\x00", "x" * 10_000])
def test_it_returns_none_for_an_unreadable_peer(peer, settings):
    settings.TOLLHOUSE_TRUSTED_PROXIES = ()
    assert resolve(peer, None) is None


@hsettings(max_examples=500, deadline=None)
@given(
    peer=st.one_of(st.none(), st.text(), st.ip_addresses().map(str)),
    forwarded=st.one_of(st.none(), st.text()),
)
def test_it_only_ever_answers_a_valid_address_or_none(peer, forwarded):
    from django.conf import settings

    settings.TOLLHOUSE_TRUSTED_PROXIES = (ip_network("0.0.0.0/0"), ip_network("::/0"))
    try:
        result = resolve(peer, forwarded)
    finally:
        settings.TOLLHOUSE_TRUSTED_PROXIES = ()
    assert result is None or str(ip_address(result)) == result


# -- the scheme a trusted proxy vouches for (X-Forwarded-Proto) ------------------------------------


def test_it_ignores_forwarded_proto_without_trusted_proxies(settings):
    settings.TOLLHOUSE_TRUSTED_PROXIES = ()
    assert forwarded_scheme("10.0.0.2", "https", None) is None


def test_it_ignores_forwarded_proto_from_an_untrusted_peer(behind_proxy):
    # The README's 10.0.0.0/8, and a client on another address that says https.
    assert forwarded_scheme("203.0.113.9", "https", None) is None
    assert forwarded_scheme("203.0.113.9", "https", "10.0.0.1") is None


def test_it_believes_forwarded_proto_from_a_trusted_proxy(behind_proxy):
    assert forwarded_scheme("10.0.0.2", "https", "198.51.100.7") == "https"
    assert forwarded_scheme("10.0.0.2", "HTTP", "198.51.100.7") == "http"
    assert forwarded_scheme("10.0.0.2", "https", None) == "https"


def test_it_reads_an_appended_forwarded_proto_at_the_clients_hop(behind_proxy):
    # The client sent "X-Forwarded-Proto: https" over plain http; the proxy appended what it saw.
    assert forwarded_scheme("10.0.0.2", "https, http", "1.2.3.4, 198.51.100.7") == "http"
    # Two trusted proxies that append: the outer one saw https from the client.
    assert forwarded_scheme("10.0.0.2", "https, http", "198.51.100.7, 10.0.0.9") == "https"


def test_it_answers_none_for_a_scheme_it_does_not_know(behind_proxy):
    assert forwarded_scheme("10.0.0.2", "gopher", None) is None
    assert forwarded_scheme("10.0.0.2", "", None) is None


@hsettings(max_examples=300, deadline=None)
@given(
    peer=st.one_of(st.none(), st.text(), st.ip_addresses().map(str)),
    proto=st.one_of(st.none(), st.text(), st.sampled_from(["https", "http, https", "https,http"])),
    forwarded=st.one_of(st.none(), st.text()),
)
def test_it_only_ever_answers_http_https_or_none_and_never_for_an_untrusted_peer(peer, proto, forwarded):
    from django.conf import settings

    settings.TOLLHOUSE_TRUSTED_PROXIES = (ip_network("10.0.0.0/8"),)
    try:
        result = forwarded_scheme(peer, proto, forwarded)
        trusted = resolve(peer, None) is not None and ip_address(resolve(peer, None)) in ip_network(
            "10.0.0.0/8"
        )
    finally:
        settings.TOLLHOUSE_TRUSTED_PROXIES = ()
    assert result in {None, "http", "https"}
    if not trusted:
        assert result is None


# -- resolve()'s memo of answers per (peer, X-Forwarded-For) -----------------------------------------


def test_a_remembered_answer_is_forgotten_when_the_trusted_proxies_change(settings):
    settings.TOLLHOUSE_TRUSTED_PROXIES = ()
    assert resolve("10.1.2.3", "203.0.113.9") == "10.1.2.3"
    settings.TOLLHOUSE_TRUSTED_PROXIES = (ip_network("10.0.0.0/8"),)
    assert resolve("10.1.2.3", "203.0.113.9") == "203.0.113.9"
    settings.TOLLHOUSE_TRUSTED_PROXIES = ()
    assert resolve("10.1.2.3", "203.0.113.9") == "10.1.2.3"


def test_the_memo_stays_bounded_however_many_headers_a_client_varies(behind_proxy):
    from config import clientip

    for i in range(clientip._RESOLVED_MAX + 50):
        assert (
            resolve("10.1.2.3", f"198.51.{i // 256 % 256}.{i % 256}") == f"198.51.{i // 256 % 256}.{i % 256}"
        )
        assert len(clientip._resolved) <= clientip._RESOLVED_MAX
