"""Redis round-trip time, measured apart from the gateway's CPU (issue 17).

Run by bench/run.py as a child process pinned to the load core (core 1) during a c=32 run: every
``--interval-ms`` it times one PING and one EVALSHA of a no-op script (``return 0``: the script
machinery without any work, like the governor's admission and settlement scripts minus their
commands), each with its own ``time.perf_counter_ns`` around the client call, on one connection.
It prints ``ready`` once connected, and on SIGTERM (or after ``--duration``) one JSON line with the
percentiles in microseconds.

The figure is what a client on this machine waits for Redis while the gateway is under load:
Redis's own time, the loopback, and the client's wake-up on a busy core 1 (shared with the mock and
the load generator), so it is an upper bound of what the gateway's event loop waits per round
trip, and that wait costs the gateway no CPU.

    python bench/redisrtt.py --url redis://127.0.0.1:6379/14 [--interval-ms 5] [--duration 10]
"""

from __future__ import annotations

import argparse
import json
import math
import signal
import time

import redis


def percentile(sorted_values: list[int], p: float) -> float | None:
    if not sorted_values:
        return None
    rank = max(1, math.ceil(p / 100.0 * len(sorted_values)))
    return float(sorted_values[min(rank, len(sorted_values)) - 1])


def summary(values_ns: list[int]) -> dict[str, float | None]:
    values = sorted(values_ns)
    out: dict[str, float | None] = {}
    for name, p in (("p50", 50), ("p90", 90), ("p99", 99), ("max", 100)):
        v = percentile(values, p)
        out[name] = round(v / 1000, 1) if v is not None else None
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Time Redis PING and a no-op EVALSHA until SIGTERM.")
    parser.add_argument("--url", required=True)
    parser.add_argument("--interval-ms", type=float, default=5.0)
    parser.add_argument("--duration", type=float, default=600.0, help="stop after this many seconds at most")
    args = parser.parse_args(argv)
    stop = [False]

    def finish(signum: int, frame: object) -> None:
        stop[0] = True

    signal.signal(signal.SIGTERM, finish)
    signal.signal(signal.SIGINT, finish)
    client = redis.Redis.from_url(args.url, socket_timeout=10)
    sha = client.script_load("return 0")
    client.ping()
    print("ready", flush=True)
    ping: list[int] = []
    evalsha: list[int] = []
    deadline = time.monotonic() + args.duration
    pause = args.interval_ms / 1000
    while not stop[0] and time.monotonic() < deadline:
        t = time.perf_counter_ns()
        client.ping()
        ping.append(time.perf_counter_ns() - t)
        t = time.perf_counter_ns()
        client.evalsha(sha, 0)
        evalsha.append(time.perf_counter_ns() - t)
        time.sleep(pause)
    client.close()
    print(
        json.dumps(
            {
                "samples": len(ping),
                "interval_ms": args.interval_ms,
                "ping_us": summary(ping),
                "evalsha_us": summary(evalsha),
            }
        ),
        flush=True,
    )


if __name__ == "__main__":
    main()
