"""The benchmark's load generator reads each dialect's stream (bench/loadgen.py), against the mock over
real HTTP: the time to the first text event is recorded, and a stream counts as complete only with its
dialect's terminal event."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from gateway.mockserver import MockServerThread
from tests.conftest import UPSTREAM_SECRET

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))

import dialects
import loadgen


def _spec(mock: MockServerThread, dialect: str, *, done_marker: bytes | None = None) -> loadgen.LoadSpec:
    return loadgen.LoadSpec(
        url=mock.url + dialects.PATHS[dialect],
        body=dialects.body(dialect, "claude-sonnet-4.5", stream=True),
        headers=dialects.headers(dialect, UPSTREAM_SECRET),
        requests=3,
        stream=True,
        done_marker=done_marker or loadgen.DONE_MARKERS[dialect],
    )


@pytest.mark.parametrize("dialect", sorted(loadgen.DONE_MARKERS))
def test_it_times_the_first_token_of_each_dialects_stream(
    mock_upstream: MockServerThread, dialect: str
) -> None:
    result = loadgen.run(_spec(mock_upstream, dialect))

    assert result.ok == 3 and result.error_count == 0, (result.statuses, result.errors)
    assert len(result.ttft_ns) == 3
    # The mock waits 20 ms before its first token (dialects.STREAM_PROMPT), then 2 ms per token.
    assert all(ttft >= 20_000_000 for ttft in result.ttft_ns)
    assert all(ttft < total for ttft, total in zip(result.ttft_ns, result.latencies_ns, strict=True))


def test_it_counts_a_stream_without_its_terminal_event_as_broken(mock_upstream: MockServerThread) -> None:
    # An Anthropic stream read as if it had to end with [DONE]: never complete.
    result = loadgen.run(_spec(mock_upstream, "anthropic_messages", done_marker=b"data: [DONE]"))

    assert result.ok == 0
    assert result.errors == {"stream_incomplete": 3}
