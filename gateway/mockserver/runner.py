"""Running the mock: start_server() inside the current event loop (returning a RunningMock),
run() in the foreground until Ctrl-C / SIGTERM, or MockServerThread in a daemon thread with its
own loop for tests and benchmarks. All of them use the same AppRunner settings (no access log,
handler cancellation on disconnect, a short shutdown timeout) and uvloop when it is installed."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import threading
from collections.abc import Callable

from aiohttp import web

from gateway.mockserver.app import build_app
from gateway.mockserver.config import DEFAULT_CONFIG, SHUTDOWN_TIMEOUT_S, MockConfig


def _format_url(host: str, port: int) -> str:
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


class RunningMock:
    """A server started by start_server() in the current event loop."""

    def __init__(self, runner: web.AppRunner, host: str, port: int) -> None:
        self._runner = runner
        self._closed = False
        self.host = host
        self.port = port
        self.url = _format_url(host, port)

    async def close(self) -> None:
        """Stop listening, end hung requests, give in-flight ones SHUTDOWN_TIMEOUT_S. Idempotent."""
        if not self._closed:
            self._closed = True
            await self._runner.cleanup()

    async def __aenter__(self) -> RunningMock:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    def __repr__(self) -> str:
        return f"<RunningMock {self.url}>"


async def start_server(
    host: str = "127.0.0.1", port: int = 0, config: MockConfig = DEFAULT_CONFIG
) -> RunningMock:
    """Start serving inside the current event loop; port=0 binds a free port (see .port/.url)."""
    runner = web.AppRunner(
        build_app(config),
        access_log=None,  # no per-request logging on the hot path
        handler_cancellation=True,  # a client that goes away cancels its (possibly hung) handler
        shutdown_timeout=SHUTDOWN_TIMEOUT_S,
    )
    await runner.setup()
    site = web.TCPSite(runner, host, port, backlog=2048)
    try:
        await site.start()
    except BaseException:
        await runner.cleanup()
        raise
    return RunningMock(runner, host, site.port)


def _loop_factory() -> Callable[[], asyncio.AbstractEventLoop]:
    try:
        import uvloop
    except ImportError:
        return asyncio.new_event_loop
    return uvloop.new_event_loop


async def _serve_until_signalled(host: str, port: int, config: MockConfig) -> None:
    mock = await start_server(host, port, config)
    print(f"mock provider listening on {mock.url}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    # SIGINT is handled by asyncio.Runner (it cancels this task); SIGTERM should stop us just as
    # cleanly, e.g. when a benchmark harness terminates the process. Where that can't be installed
    # (Windows, not the main thread) SIGTERM keeps its default behaviour.
    with contextlib.suppress(NotImplementedError, RuntimeError):
        loop.add_signal_handler(signal.SIGTERM, stop.set)
    try:
        await stop.wait()
    finally:
        await mock.close()


def run(host: str = "127.0.0.1", port: int = 8001, config: MockConfig = DEFAULT_CONFIG) -> None:
    """Serve in the foreground until Ctrl-C / SIGTERM; uses uvloop when it is installed."""
    # Ctrl-C is the normal way to stop the foreground server, not an error; the runner (inner
    # context) still closes the loop before the KeyboardInterrupt is suppressed.
    with contextlib.suppress(KeyboardInterrupt), asyncio.Runner(loop_factory=_loop_factory()) as runner:
        runner.run(_serve_until_signalled(host, port, config))


class MockServerThread:
    """Run the mock in a daemon thread with its own event loop (for tests and benchmarks).

    >>> with MockServerThread(config=MockConfig(tokens=4)) as mock:
    ...     base_url = mock.url + "/v1"
    """

    START_TIMEOUT_S = 10.0

    def __init__(self, host: str = "127.0.0.1", port: int = 0, config: MockConfig = DEFAULT_CONFIG) -> None:
        self.host = host
        self.port = port
        self.config = config
        self.url = _format_url(host, port)
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None

    def start(self) -> MockServerThread:
        """Start the thread and block until the server is listening (raises if it could not)."""
        if self._thread is not None:
            raise RuntimeError("MockServerThread already started")
        self._thread = threading.Thread(target=self._thread_main, name="mock-provider", daemon=True)
        self._thread.start()
        if not self._ready.wait(self.START_TIMEOUT_S):
            raise RuntimeError(f"mock provider did not start within {self.START_TIMEOUT_S} s")
        if self._error is not None:
            self._thread.join()
            self._thread = None
            raise self._error
        return self

    def stop(self) -> None:
        """Stop the server (in-flight requests get SHUTDOWN_TIMEOUT_S) and join the thread."""
        thread, self._thread = self._thread, None
        if thread is None:
            return
        if self._loop is not None and self._stop is not None and thread.is_alive():
            self._loop.call_soon_threadsafe(self._stop.set)
        thread.join(self.START_TIMEOUT_S)

    def __enter__(self) -> MockServerThread:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def _thread_main(self) -> None:
        with asyncio.Runner(loop_factory=_loop_factory()) as runner:
            runner.run(self._serve())

    async def _serve(self) -> None:
        try:
            mock = await start_server(self.host, self.port, self.config)
        except Exception as exc:  # handed to start()'s caller, who re-raises it
            self._error = exc
            self._ready.set()
            return
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        self.port = mock.port
        self.url = mock.url
        self._ready.set()
        try:
            await self._stop.wait()
        finally:
            await mock.close()

    def __repr__(self) -> str:
        return f"<MockServerThread {self.url}>"
