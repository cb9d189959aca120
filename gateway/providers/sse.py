"""Server-sent events as upstreams send them, for the adapters that read them event by event
(Anthropic, Gemini, OpenAI Responses): split on blank lines (LF or CRLF, as Google sends), the
provider's credential redacted before anything is read, and an answer that is a document rather
than events refused (`not_a_stream`)."""

from __future__ import annotations

from dataclasses import dataclass

from gateway import canonical
from gateway.providers.base import (
    StreamParser,
    credential_forms,
    not_a_stream,
    redact_forms,
    starts_as_document,
)

# A document sent instead of a stream is not read past this size.
MAX_DOCUMENT_BYTES = 4 * 1024 * 1024


@dataclass(frozen=True)
class Event:
    raw: bytes  # the whole event as received (CRLF made LF, credential redacted), without its blank line
    name: str  # its `event:` field, "" when it has none
    data: bytes  # its `data:` lines joined


class EventBuffer:
    """Bytes in, whole events out; `rest()` at the end of the body."""

    def __init__(self, *, credential: str) -> None:
        self._forms = credential_forms(credential)
        self._buffer = b""
        self._checked = False

    def feed(self, data: bytes) -> list[Event]:
        self._buffer += data
        if not self._checked:
            if not self._buffer.strip():
                return []
            if starts_as_document(self._buffer):
                if len(self._buffer) > MAX_DOCUMENT_BYTES:
                    raise not_a_stream()
                return []  # kept whole: refused by rest() at the end of the body
            self._checked = True
        if b"\r" in self._buffer:
            self._buffer = self._buffer.replace(b"\r\n", b"\n")
        if b"\n\n" not in self._buffer:
            return []
        if self._forms:
            # Before any event is read; an event stays here until it is whole, so a quote split
            # across reads is found whole.
            self._buffer = redact_forms(self._buffer, self._forms)
        *events, self._buffer = self._buffer.split(b"\n\n")
        return [parse_event(event) for event in events if event.strip()]

    def rest(self) -> list[Event]:
        """What is left when the body ends: a last event without its blank line, or nothing."""
        if not self._checked and self._buffer.strip() and starts_as_document(self._buffer):
            raise not_a_stream()
        rest, self._buffer = self._buffer.replace(b"\r\n", b"\n"), b""
        rest = redact_forms(rest, self._forms)
        return [parse_event(rest)] if rest.strip() else []


def parse_event(raw: bytes) -> Event:
    name = ""
    data: list[bytes] = []
    for line in raw.split(b"\n"):
        if line.startswith(b"data:"):
            data.append(line[5:].lstrip(b" "))
        elif line.startswith(b"event:"):
            name = line[6:].strip().decode("utf-8", "replace")
    return Event(raw=raw, name=name, data=b"\n".join(data))


class EventStreamParser(StreamParser):
    """A StreamParser for an upstream that sends server-sent events: the one loop that splits the
    body into events (EventBuffer) and hands each to `read`, which a format's parser writes."""

    def __init__(self, *, credential: str = "") -> None:
        self._events = EventBuffer(credential=credential)
        self.done = False
        self.chunks = 0

    def read(self, event: Event, out: list[canonical.StreamEvent]) -> None:
        raise NotImplementedError

    def feed(self, data: bytes) -> list[canonical.StreamEvent]:
        out: list[canonical.StreamEvent] = []
        for event in self._events.feed(data):
            self.read(event, out)
        return out

    def finish(self) -> list[canonical.StreamEvent]:
        out: list[canonical.StreamEvent] = []
        for event in self._events.rest():
            self.read(event, out)
        return out
