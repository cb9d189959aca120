"""The command line of the mock provider: the flags (add_arguments), turning parsed options into a
MockConfig (config_from_options) and main() for ``python -m gateway.mockserver``; the
``manage.py mockprovider`` command reuses the first two so both entry points take the same flags."""

from __future__ import annotations

import argparse
from collections.abc import Mapping, Sequence
from typing import Any

from gateway.mockserver.config import MockConfig
from gateway.mockserver.runner import run

# The first line of the package docstring, as the single-module version used for --help.
_DESCRIPTION = "Mock LLM provider speaking the OpenAI wire format, for tests and benchmarks."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    defaults = MockConfig()
    parser.add_argument("--host", default="127.0.0.1", help="interface to bind (default: 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8001, help="port, 0 = any free port (default: 8001)")
    parser.add_argument("--ttft-ms", type=float, default=defaults.ttft_ms, help="delay before first byte")
    parser.add_argument("--chunk-ms", type=float, default=defaults.chunk_ms, help="delay between chunks")
    parser.add_argument("--tokens", type=int, default=defaults.tokens, help="default completion tokens")
    parser.add_argument("--api-key", default=None, help="require 'Authorization: Bearer <key>'")


def config_from_options(options: Mapping[str, Any]) -> MockConfig:
    """MockConfig from parsed add_arguments() options (argparse vars() or Django's options)."""
    return MockConfig(
        ttft_ms=options["ttft_ms"],
        chunk_ms=options["chunk_ms"],
        tokens=options["tokens"],
        api_key=options["api_key"],
    )


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m gateway.mockserver", description=_DESCRIPTION)
    add_arguments(parser)
    options = vars(parser.parse_args(argv))
    try:
        config = config_from_options(options)
    except ValueError as exc:
        parser.error(str(exc))
    run(options["host"], options["port"], config)
