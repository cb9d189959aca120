"""Mock LLM provider speaking the OpenAI, Anthropic and Gemini wire formats, for tests and benchmarks.

A real HTTP server (aiohttp.web) that answers like OpenAI (chat and Responses), Anthropic Messages
and Google Gemini, so the gateway, the official ``openai``, ``anthropic`` and ``google-genai`` SDKs
and load generators can talk to it unchanged. It has no Django dependency: run it with
``python -m gateway.mockserver --port 8001`` or ``python manage.py mockprovider --port 8001``,
embed it in a running event loop with :func:`start_server`, or run it in a background thread
with :class:`MockServerThread`.

Endpoints
---------
``POST /v1/chat/completions``  non-stream and SSE stream (``"stream": true``, honours
                               ``stream_options.include_usage``).
``POST /v1/embeddings``        ``input`` as str, list[str], list[int] or list[list[int]];
                               ``dimensions`` (default 8); ``encoding_format`` "float" or "base64".
``POST /v1/responses``         OpenAI Responses: JSON, or the typed event stream (``response.created``
                               ... ``response.completed``, ``response.incomplete`` at the limit).
``POST /v1/messages``          Anthropic Messages: JSON, or the event stream (message_start, ping,
                               content blocks for thinking / text / tool_use, message_delta,
                               message_stop). Needs ``anthropic-version``; ``x-api-key`` or bearer.
``POST /v1/messages/count_tokens``  Anthropic's token count (``{"input_tokens": N}``).
``POST /v1beta/models/{model}:generateContent``, ``:streamGenerateContent?alt=sse``,
``:countTokens``               Gemini; key in ``x-goog-api-key`` or ``?key=``.
``GET  /v1/models``            the configured model ids (``GET /v1/models/{id}`` retrieves one).
``GET  /_mock/requests``       the last 200 requests, newest last (method, path, lower-cased
                               headers, parsed JSON body or null); ``DELETE`` clears the log.
``PUT  /_mock/delays``         ``{"model": M, "ttft_ms": X}``: answers for model M (chat, Messages,
                               Responses, Gemini) wait X ms before their first byte unless a
                               ``ttft_ms`` directive says otherwise (0 removes it; ``DELETE``
                               removes all): a slow deployment, and its recovery, for routing tests.
Anything else is an OpenAI-shaped 404 (Google-shaped under /v1beta; 405 for a known path with the
wrong method). Every response echoes the request's ``X-Request-ID``. If ``MockConfig.api_key`` is
set, every API path requires it the way its format sends it (OpenAI: bearer, 401; Anthropic: 401
``authentication_error``; Gemini: 403 without a key, 400 ``API_KEY_INVALID`` with a wrong one);
``/_mock/*`` never does. Each format validates like its real API (unknown fields, roles, tool
results that answer the previous turn's calls, Anthropic's thinking budget rules, Gemini's part
fields and function names, Responses' ``max_output_tokens`` >= 16 and no ``previous_response_id``)
and answers a 400 in its own error shape: Anthropic ``{"type": "error", "error": {...}}``, Gemini
``{"error": {"code", "message", "status"}}``, OpenAI ``{"error": {"message", "type", "param",
"code"}}``. A thinking block's ``signature``, a Gemini ``thoughtSignature`` and a Responses
``encrypted_content`` are ones the mock made for that content; one it did not make is a 400, as a
real provider rejects a signature from another (see tests/gateway/test_mockserver_*.py).

Token accounting (deterministic, so tests can assert exact usage numbers)
-------------------------------------------------------------------------
* Chat prompt tokens = 3 + sum over messages of ``4 + ceil(len(text) / 4)``, where ``text`` is
  the message ``content`` string, or the concatenation of the ``text`` of its content parts
  (non-text parts and ``null`` content count as ""). Directive text inside the prompt counts too.
  The other formats count the same way: a system prompt (Anthropic ``system``, Gemini
  ``systemInstruction``, Responses ``instructions``) is one more message; a message's text is its
  text blocks/parts plus its tool results' text (Anthropic ``tool_result`` content, Responses
  ``function_call_output``; not Gemini's ``functionResponse``); a Responses string input is one
  message and every input item one more (reasoning items excepted).
* Tool calls: ``tool_calls=N`` (or a tool choice that forces one: chat ``required`` / a named
  function, Anthropic ``any`` / ``tool``, Gemini mode ``ANY``, Responses ``required`` / a named
  function: one call) answers N calls of the request's tools in turn (the forced one only), with
  arguments that fit each tool's declared properties (a word for a string, the call's index for an
  integer, the first enum value, ...; ``{"call": i}`` for a tool without properties). A tool choice
  of none means no calls. Each call costs ``ceil(len(name) / 4) + ceil(len(arguments) / 4)``
  completion tokens; the answer has no text unless ``tokens`` is given, and ends as a tool call:
  ``tool_calls`` / ``tool_use`` / ``STOP`` (Gemini) / function_call items. In a stream a call is two
  chunks (its arguments in two halves; Gemini: one chunk, whole).
* ``reasoning_tokens=N`` thinking tokens are billed as output: chat ``reasoning_tokens``, Anthropic a
  signed thinking block (N words) counted in ``output_tokens``, Gemini ``thoughtsTokenCount`` (apart
  from ``candidatesTokenCount``; thought parts only with ``includeThoughts``; the first function call
  carries a ``thoughtSignature``), Responses a reasoning item (``encrypted_content`` when
  ``include`` asks for it) and ``output_tokens_details.reasoning_tokens``.
* Completion tokens = the ``tokens`` directive if given (exactly, max_tokens is ignored); else
  ``max_completion_tokens`` / ``max_tokens`` (the smaller if both) when it is smaller than
  ``MockConfig.tokens``, with ``finish_reason "length"``; else ``MockConfig.tokens`` with
  ``finish_reason "stop"``.
* Completion text = that many words cycling over a fixed lorem-ipsum list, each followed by a
  space (so it ends with a space). A stream sends one chunk per word; the concatenated stream
  content equals the non-stream content.
* Embedding prompt tokens = sum of ``ceil(len(text) / 4)`` per string input, plus the length of
  each token-id input. Vectors are unit-length, derived from a SHAKE-128 hash of the input, and
  rounded to float32, so the "float" and "base64" (little-endian float32) forms agree exactly.

Directives (fault injection and scripting, per request)
-------------------------------------------------------
Given as request headers ``X-Mock-<Name>: <value>`` (e.g. ``X-Mock-Retry-After: 3``) and/or in
the text of the LAST chat message (the first string input for embeddings) as a token like
``[mock status=429 retry_after=3]`` (key=value pairs and bare flags separated by spaces or
commas; "-" and "_" are interchangeable in names). Headers win over prompt text. An unknown
name or an invalid value is answered with a 400 OpenAI error whose ``param`` names the
directive.

``status=N``         (400-599) answer HTTP N with an OpenAI error body, message
                     "mock fault: status N" and a type matching the code.
``retry_after=S``    with ``status``: add ``Retry-After: S`` (seconds, as given).
``echo_credential``  quote the bearer credential the request carried, as some upstreams and relays
                     do (for testing the gateway's redaction): with ``status``, in the error
                     message; otherwise in the HTTP 200 answer: a chat completion's content
                     begins with it (a stream: one extra content chunk after the role chunk), an
                     embeddings answer's ``model`` ends with it. Usage does not count the quote.
``ignore_stream``    answer a ``"stream": true`` chat request with the non-stream JSON completion,
                     as some upstreams do.
``hang``             never answer: park the request for up to 600 s; it ends silently when the
                     client disconnects or the server shuts down.
``malformed``        HTTP 200 whose body is not valid JSON; in a stream, one malformed
                     ``data:`` line right after the first (role) chunk, then the normal stream.
``drop``             close the connection before any response.
``drop_after=N``     stream: abort the connection after N chunks (one per thinking or text token,
                     two per tool call; no terminal event, no ``[DONE]`` / ``message_stop`` /
                     ``response.completed`` / finishReason); N >= the count aborts right after
                     the last chunk.
``hang_after=N``     stream: hang after N token chunks (same clamping as drop_after).
                     Non-stream requests have no chunks, so drop_after/hang_after act like
                     drop/hang there.
``ttft_ms=X``        override ``MockConfig.ttft_ms``: the delay before the first byte of a
                     stream, or before a non-stream response. It also delays injected
                     ``status``/``malformed``/``drop`` outcomes (send ``ttft_ms=0`` for an
                     instant fault) but not 400 validation errors.
``chunk_ms=Y``       override ``MockConfig.chunk_ms``: the delay before each token chunk after
                     the first, so a stream lasts about ttft + (tokens - 1) * chunk_ms.
``tokens=N``         completion token count (see above).
``prompt_tokens=N``  override the computed prompt tokens (chat and embeddings).
``fault_times=N``    with ``fault_key=K`` (1-64 of ``A-Za-z0-9_.:-``): a fault script. The faults
                     given (status, retry_after, hang, drop, malformed, drop_after, hang_after)
                     apply to the first N requests naming K, later ones are answered normally:
                     ``status=500 fault_times=2 fault_key=t1`` answers 500, 500, then 200 (a
                     retry of the same request). Either without the other is a 400.
``cached_tokens=N``  tokens read from the prompt cache (default 0): chat ``cached_tokens``,
                     Anthropic ``cache_read_input_tokens``, Gemini ``cachedContentTokenCount``,
                     Responses ``input_tokens_details.cached_tokens``.
``cache_write_tokens=N``, ``cache_write_1h_tokens=M``  tokens written to the cache (5-minute and
                     1-hour, N + M in all): Anthropic ``cache_creation_input_tokens`` with its
                     ``cache_creation`` split, OpenAI ``cache_write_tokens`` (Responses: 30-minute /
                     12-hour split); a 400 for Gemini. Cached + written must be <= the prompt tokens.
                     Prompt tokens include both, except Anthropic's ``input_tokens``, which (as
                     there) leaves them out.
``tool_calls=N``     (0-16) answer with N tool calls (see above); a 400 if the request has no tools.
``reasoning_tokens=N``  thinking / reasoning tokens (see above).
``error_after=N``    stream: after N chunks, the format's in-stream error event (chat ``data:
                     {"error": ...}``, Anthropic ``event: error``, Gemini ``data: {"error": ...}``,
                     Responses ``response.failed``) and the end of the stream; non-stream: a 500.

Flags given as headers take a boolean value: "" / 1 / true / yes / on, or 0 / false / no / off
(so a header can switch off a flag set in the prompt). The request log records a request before
any directive is applied.
"""

from gateway.mockserver.app import build_app
from gateway.mockserver.cli import add_arguments, config_from_options, main
from gateway.mockserver.config import MockConfig
from gateway.mockserver.runner import MockServerThread, RunningMock, run, start_server

__all__ = [
    "MockConfig",
    "MockServerThread",
    "RunningMock",
    "add_arguments",
    "build_app",
    "config_from_options",
    "main",
    "run",
    "start_server",
]
