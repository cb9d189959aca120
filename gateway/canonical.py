"""The canonical call: what every client dialect is parsed into and every upstream adapter reads.

An ingress codec (gateway/dialects/) turns a client's request into one `Request`; an adapter
(gateway/providers/) turns that into its upstream's wire format and the upstream's answer back into
one `Response`, or, for a stream, into a sequence of `StreamEvent`s; the codec renders those in the
client's dialect. Nothing here does I/O or knows a wire format.

Conventions every codec and adapter keeps:
- System prompts are messages with role SYSTEM (an adapter that has a separate field collects them,
  in order); a developer message is a SYSTEM message.
- A tool call's `arguments` is JSON text, as the model wrote it (not re-encoded): `{}` when empty.
- Thinking (`ThinkingPart`) and encrypted reasoning (`ReasoningPart`) carry `provider`, the adapter
  kind that made them. An adapter sends them upstream only when `provider` is its own kind and drops
  them otherwise (a signature is only valid where it was made; a forged one is an upstream 400).
- Token counts: `prompt_tokens` includes cached and cache-write tokens; `completion_tokens` includes
  reasoning tokens (reasoning is billed as output). `cached_tokens`, `cache_write_tokens` and
  `reasoning_tokens` say how many of those were of that sort.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any


class Role(StrEnum):
    SYSTEM = "system"
    USER = "user"
    ASSISTANT = "assistant"
    TOOL = "tool"  # a message of TOOL results (ToolResultPart only)


class FinishReason(StrEnum):
    STOP = "stop"  # the model ended its turn, or hit a stop sequence
    LENGTH = "length"  # the output limit
    TOOL_CALLS = "tool_calls"  # the turn ends with tool calls to run
    CONTENT_FILTER = "content_filter"
    ERROR = "error"


# -- content parts ------------------------------------------------------------------------------


@dataclass
class TextPart:
    text: str


@dataclass
class ImagePart:
    """An image by URL: `https://...`, or `data:<media type>;base64,<data>` for inline bytes."""

    url: str
    detail: str = ""  # OpenAI's "low" / "high" / "auto"; others ignore it

    @property
    def inline(self) -> tuple[str, str] | None:
        """(media type, base64 data) of a data: URL; None for a remote URL."""
        if not self.url.startswith("data:") or ";base64," not in self.url:
            return None
        head, data = self.url[5:].split(";base64,", 1)
        return head or "application/octet-stream", data


@dataclass
class ToolCallPart:
    id: str
    name: str
    arguments: str = "{}"  # JSON text
    # Gemini signs a function call made while thinking; relayed only to the adapter named here.
    signature: str = ""
    provider: str = ""


@dataclass
class ToolResultPart:
    tool_call_id: str
    content: list[TextPart | ImagePart] = field(default_factory=list)
    is_error: bool = False
    name: str = ""  # the tool's name, where the client said it (Gemini needs it; see codecs)

    @property
    def text(self) -> str:
        return "".join(part.text for part in self.content if isinstance(part, TextPart))


@dataclass
class ThinkingPart:
    """Visible thinking (Anthropic `thinking` / `redacted_thinking`, Gemini `thought` parts).

    `signature` (Anthropic) or `redacted` data travel back only to `provider`, verbatim."""

    text: str = ""
    signature: str = ""
    redacted: str = ""  # Anthropic's redacted_thinking `data`
    provider: str = ""


@dataclass
class ReasoningPart:
    """An OpenAI reasoning item: encrypted content goes back only to `provider`, verbatim."""

    id: str = ""
    encrypted_content: str = ""
    summary: list[str] = field(default_factory=list)
    provider: str = ""


Part = TextPart | ImagePart | ToolCallPart | ToolResultPart | ThinkingPart | ReasoningPart


@dataclass
class Message:
    role: Role
    content: list[Part] = field(default_factory=list)
    name: str = ""

    @property
    def text(self) -> str:
        return "".join(part.text for part in self.content if isinstance(part, TextPart))

    @property
    def tool_calls(self) -> list[ToolCallPart]:
        return [part for part in self.content if isinstance(part, ToolCallPart)]


# -- request -------------------------------------------------------------------------------------


@dataclass
class Tool:
    name: str
    description: str = ""
    parameters: dict[str, Any] = field(default_factory=lambda: {"type": "object", "properties": {}})
    strict: bool | None = None


@dataclass
class ToolChoice:
    mode: str = "auto"  # "auto", "none", "required" (any tool), "tool" (the one named)
    name: str = ""
    parallel: bool | None = None  # parallel tool calls allowed; None: the upstream's default


@dataclass
class ResponseFormat:
    type: str = "text"  # "text", "json_object", "json_schema"
    schema: dict[str, Any] | None = None
    name: str = ""
    strict: bool | None = None


@dataclass
class Reasoning:
    effort: str | None = None  # "minimal", "low", "medium", "high"
    budget_tokens: int | None = None  # Anthropic / Gemini thinking budget
    summary: str | None = None  # OpenAI Responses: "auto", "concise", "detailed"
    enabled: bool | None = None  # explicitly on / off; None: the upstream's default


@dataclass
class Sampling:
    temperature: float | None = None
    top_p: float | None = None
    top_k: int | None = None
    stop: list[str] = field(default_factory=list)
    seed: int | None = None
    presence_penalty: float | None = None
    frequency_penalty: float | None = None


@dataclass
class Request:
    model: str  # as the client asked; the adapter sends its deployment's upstream model instead
    messages: list[Message]
    tools: list[Tool] = field(default_factory=list)
    tool_choice: ToolChoice | None = None
    sampling: Sampling = field(default_factory=Sampling)
    max_output_tokens: int | None = None
    response_format: ResponseFormat | None = None
    reasoning: Reasoning | None = None
    stream: bool = False
    user: str = ""  # the end user, as the client named it
    session: str = ""  # the agent session (X-Claude-Code-Session-Id, X-Session-Id, Codex's session_id)
    # Anthropic beta flags the client sent: passed on to Anthropic upstreams only, never an error.
    betas: list[str] = field(default_factory=list)
    # What the client's dialect carries that has no canonical field; used only by pass-through.
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def prompt_chars(self) -> int:
        """The prompt's text length: the token estimate when an upstream never reports usage."""
        total = 0
        for message in self.messages:
            for part in message.content:
                if isinstance(part, TextPart | ThinkingPart):
                    total += len(part.text)
                elif isinstance(part, ToolCallPart):
                    total += len(part.name) + len(part.arguments)
                elif isinstance(part, ToolResultPart):
                    total += len(part.text)
        for tool in self.tools:
            total += len(tool.name) + len(tool.description)
        return total


# -- answer --------------------------------------------------------------------------------------


@dataclass
class Usage:
    prompt_tokens: int = 0  # all input, cached and cache-write included
    cached_tokens: int = 0  # of prompt_tokens, read from the provider's cache
    completion_tokens: int = 0  # all output, reasoning included
    cache_write_tokens: int = 0  # of prompt_tokens, written to the provider's cache
    reasoning_tokens: int = 0  # of completion_tokens, thinking / reasoning
    reported: bool = False  # the upstream said so
    estimated: bool = False  # the upstream never said; the gateway counted what it saw


@dataclass
class Response:
    id: str
    model: str  # as the upstream named it
    content: list[Part]  # TextPart, ToolCallPart, ThinkingPart, ReasoningPart, in order
    finish_reason: FinishReason
    usage: Usage

    @property
    def text(self) -> str:
        return "".join(part.text for part in self.content if isinstance(part, TextPart))

    @property
    def tool_calls(self) -> list[ToolCallPart]:
        return [part for part in self.content if isinstance(part, ToolCallPart)]


# -- stream events -------------------------------------------------------------------------------
# An adapter's stream parser yields these in order: one Start; deltas; then Usage (if the upstream
# reports it) and Finish; or an Error at any point. Tool calls are numbered by `index` (0, 1, ...
# in the order they start), so parallel calls keep their own ids and arguments.


@dataclass
class Start:
    id: str = ""
    model: str = ""
    usage: Usage | None = None  # input usage, where the upstream says it up front (Anthropic)


@dataclass
class TextDelta:
    text: str


@dataclass
class ThinkingDelta:
    text: str = ""
    signature: str = ""  # arrives once, at the end of the thinking block (Anthropic)
    redacted: str = ""
    provider: str = ""


@dataclass
class ReasoningDone:
    """A whole reasoning item (OpenAI's encrypted reasoning arrives in one piece)."""

    part: ReasoningPart


@dataclass
class ToolCallStart:
    index: int
    id: str
    name: str
    signature: str = ""
    provider: str = ""


@dataclass
class ToolCallDelta:
    index: int
    arguments: str  # a fragment of the JSON text


@dataclass
class UsageUpdate:
    usage: Usage  # the totals so far (not an increment)


@dataclass
class Finish:
    reason: FinishReason


@dataclass
class StreamError:
    """The upstream broke the stream; `error` is a providers.base.ProviderError."""

    error: Any


StreamEvent = (
    Start
    | TextDelta
    | ThinkingDelta
    | ReasoningDone
    | ToolCallStart
    | ToolCallDelta
    | UsageUpdate
    | Finish
    | StreamError
)


def collect(events: list[StreamEvent]) -> Response:
    """The response a stream adds up to (for tests, and for codecs that answer JSON from a stream)."""
    response = Response(id="", model="", content=[], finish_reason=FinishReason.STOP, usage=Usage())
    calls: dict[int, ToolCallPart] = {}
    for event in events:
        if isinstance(event, Start):
            response.id, response.model = event.id, event.model
            if event.usage is not None:
                response.usage = event.usage
        elif isinstance(event, TextDelta):
            last = response.content[-1] if response.content else None
            if isinstance(last, TextPart):
                last.text += event.text
            else:
                response.content.append(TextPart(event.text))
        elif isinstance(event, ThinkingDelta):
            last = response.content[-1] if response.content else None
            if not isinstance(last, ThinkingPart):
                last = ThinkingPart(provider=event.provider)
                response.content.append(last)
            last.text += event.text
            last.signature += event.signature
            last.redacted += event.redacted
        elif isinstance(event, ReasoningDone):
            response.content.append(event.part)
        elif isinstance(event, ToolCallStart):
            calls[event.index] = ToolCallPart(
                id=event.id, name=event.name, arguments="", signature=event.signature, provider=event.provider
            )
            response.content.append(calls[event.index])
        elif isinstance(event, ToolCallDelta) and event.index in calls:
            calls[event.index].arguments += event.arguments
        elif isinstance(event, UsageUpdate):
            response.usage = event.usage
        elif isinstance(event, Finish):
            response.finish_reason = event.reason
    for call in calls.values():
        call.arguments = call.arguments or "{}"
    return response
