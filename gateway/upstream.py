"""The hot path's HTTP client: one pooled aiohttp session per process, behind one small interface.

The executor (gateway/executor.py) is its only caller on the request path. It used to be httpx over
an aiohttp transport (httpx-aiohttp); the bench profile (bench/REPORT.md, "Where the time goes")
put httpx's wrapper at about a sixth of the gateway's CPU per call (building an httpx Request,
URL parsing, header models, the cookie jar, the auth and redirect layers, then a second response
object around aiohttp's), for nothing the gateway uses. aiohttp used directly does the same work:

- timeouts: `connect` covers waiting for a pooled connection and connecting (httpx's pool +
  connect), `sock_read` is the longest wait for any read, the answer's head included (httpx's read
  timeout: a stream's idle timeout); the executor adds the first-byte and total limits around it;
- the pool: at most TOLLHOUSE_UPSTREAM_MAX_CONNECTIONS connections, kept alive 60 s;
- no cookies are kept (a cookie one tenant's upstream sets must never ride on another's call), no
  proxy from the environment, no redirects followed, the answer's content-encoding decoded;
- cancellation: cancelling a send or a read closes that connection, so the upstream call stops;
- errors are aiohttp's (`aiohttp.ClientError`, `TimeoutError`, `OSError`), which the executor maps
  to the gateway's (`transport_error`).

httpx stays for everything off the hot path (webhooks, the connection test, OIDC).
"""

from __future__ import annotations

import asyncio
from functools import lru_cache
from typing import TYPE_CHECKING

import aiohttp
from yarl import URL

from config.hot import hot

if TYPE_CHECKING:
    from gateway.providers.base import UpstreamRequest

Response = aiohttp.ClientResponse


@lru_cache(maxsize=4096)
def _url(url: str) -> URL:
    """A deployment's URLs repeat: parsed once (yarl's parsing is a visible share of a call)."""
    return URL(url)


@lru_cache(maxsize=256)
def _timeout(connect: float, read: float) -> aiohttp.ClientTimeout:
    return aiohttp.ClientTimeout(total=None, connect=connect, sock_read=read)


class UpstreamClient:
    def __init__(self) -> None:
        self._session: aiohttp.ClientSession | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def _open_session(self) -> aiohttp.ClientSession:
        session = self._session
        loop = asyncio.get_running_loop()
        # A session belongs to the event loop it was made in (tests run one loop after another).
        if session is None or session.closed or self._loop is not loop:
            self._loop = loop
            connector = aiohttp.TCPConnector(
                limit=hot.TOLLHOUSE_UPSTREAM_MAX_CONNECTIONS,
                limit_per_host=0,
                keepalive_timeout=60,
            )
            session = self._session = aiohttp.ClientSession(
                connector=connector,
                cookie_jar=aiohttp.DummyCookieJar(),
                trust_env=False,
                # What the adapter says is sent; a body without a content-type gets none added.
                skip_auto_headers=("Content-Type",),
            )
        return session

    async def send(
        self, request: UpstreamRequest, *, connect_timeout: float, read_timeout: float
    ) -> Response:
        """POST the adapter's request and return once the answer's head is in; its body is read by
        the caller (`read()`, or `content.iter_any()` for a stream), who closes it (`close(response)`)."""
        return await self._open_session().request(
            "POST",
            _url(request.url),
            data=request.content,
            headers=request.headers,
            timeout=_timeout(connect_timeout, read_timeout),
            allow_redirects=False,
        )

    async def close(self) -> None:
        if self._session is not None and self._loop is asyncio.get_running_loop():
            await self._session.close()
        self._session = self._loop = None


def close(response: Response) -> None:
    """Done with an answer: a body read to its end has already given its connection back to the
    pool; one that was not (a stream the client left, an error) has its connection closed, which
    stops the upstream's work."""
    response.close()


def lower_headers(response: Response) -> dict[str, str]:
    """The answer's headers with lower-case names (what adapters look up); a name repeated has its
    values joined with ", " (as httpx did)."""
    out: dict[str, str] = {}
    for name, value in response.headers.items():
        key = name.lower()
        out[key] = f"{out[key]}, {value}" if key in out else value
    return out
