"""billing/periods.py `window`: the last window per (period, zone) is kept while instants fall in it;
whatever order instants come in, the answer is the one computed afresh."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hypothesis import given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from billing.periods import PERIODS, _window, window

ZONES = ["UTC", "Europe/Berlin", "America/New_York", "Asia/Kolkata", "Pacific/Chatham"]
# Instants around month ends and DST changes: where a kept window must not be reused.
INSTANTS = st.datetimes(
    min_value=datetime(2026, 3, 1), max_value=datetime(2026, 11, 30), timezones=st.just(UTC)
)


@hsettings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(PERIODS), st.sampled_from(ZONES), INSTANTS), max_size=20))
def test_a_kept_window_is_the_window_computed_afresh(asks):
    for period, zone, at in asks:
        for instant in (at, at + timedelta(microseconds=1), at - timedelta(days=1)):
            got = window(period, zone, instant)
            assert got == _window(period, zone, instant)
            assert got.start <= instant < got.end


def test_the_instant_just_past_a_window_gets_the_next_one():
    first = window("day", "Europe/Berlin", datetime(2026, 12, 4, 22, 59, 59, 999999, tzinfo=UTC))
    second = window("day", "Europe/Berlin", first.end)
    assert second.start == first.end and second.label == "20261205"
