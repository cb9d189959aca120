"""The command line, shared by `python -m gateway.mockserver` and `manage.py mockprovider`."""

from __future__ import annotations

import argparse
from collections.abc import Mapping, Sequence
from typing import Any

from gateway.mockserver.config import MockConfig
from gateway.mockserver.runner import run


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
    parser = argparse.ArgumentParser(
        prog="python -m gateway.mockserver", description="Mock LLM provider speaking the OpenAI wire format."
    )
    add_arguments(parser)
    options = vars(parser.parse_args(argv))
    try:
        config = config_from_options(options)
    except ValueError as exc:
        parser.error(str(exc))
    run(options["host"], options["port"], config)
