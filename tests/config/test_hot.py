"""config/hot.py: settings read once on the request path, and read again after a change."""

from __future__ import annotations

from config.hot import hot


def test_it_reads_a_setting_once_and_again_after_a_change(settings):
    settings.TOLLHOUSE_REDIS_PREFIX = "first:"
    assert hot.TOLLHOUSE_REDIS_PREFIX == "first:"
    assert hot.__dict__["TOLLHOUSE_REDIS_PREFIX"] == "first:"  # kept: no LazySettings read next time
    settings.TOLLHOUSE_REDIS_PREFIX = "second:"  # pytest-django's fixture sends setting_changed
    assert hot.TOLLHOUSE_REDIS_PREFIX == "second:"


def test_redis_keys_follow_a_changed_prefix(settings):
    from config.redis import redis_key

    settings.TOLLHOUSE_REDIS_PREFIX = "one:"
    assert redis_key("rl", "k") == "one:rl:k"
    settings.TOLLHOUSE_REDIS_PREFIX = "two:"
    assert redis_key("rl", "k") == "two:rl:k"
