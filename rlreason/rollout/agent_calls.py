"""One OpenAI-style request of an agent as token ids, and the engine's sample as the OpenAI response.

Token in, token out: a request whose conversation extends the episode's previous call (its messages plus the
answer it got, or for completions its prompt plus the text it got) reuses that call's exact token ids, prompt and
sampled, and renders only what was added (``ChatDelta``, as for environments): the model's tokens are never
decoded and encoded again, so the calls of an episode join into one training row and the recorded logprobs stay
the sampler's. Any other request is rendered whole (the chat template with its ``tools``, or the prompt's text),
which starts a new row. A model without a chat template reads a conversation's contents joined as plain text.

Sampling follows the recipe (temperature, top_p, the per-turn token limit): an agent's own ``temperature`` is
ignored, since training needs the sampler's distribution; its ``max_tokens`` may only lower the limit; its
``stop`` strings apply. Tool calls in the Hermes format (``<tool_call>{"name": ..., "arguments": ...}</tool_call>``)
come back as ``tool_calls`` when the request offers ``tools``.
"""

from __future__ import annotations

import json
import re
import time
import uuid
from dataclasses import dataclass, field

from rlreason.rollout.turns import observation_ids

_TOOL_CALL = re.compile(r"<tool_call>\s*(\{.*?\})\s*</tool_call>", re.DOTALL)


class BadRequest(ValueError):
    """A request the endpoint answers with HTTP 400 (the message says what is wrong)."""


@dataclass
class Prior:
    """What a later call may extend: the previous call's conversation and its full token ids."""

    key: object  # chat: the normalised messages including the answer; completion: the prompt and text
    ids: list[int]
    eos: bool  # it ended at EOS (the chat template's closing follows without the EOS token)


@dataclass
class Rendered:
    """A request made ready for the engine."""

    kind: str
    ids: list[int]
    max_tokens: int | None
    stop: list[str]
    tools: bool
    logprobs: bool
    messages: list | None = None  # chat: the normalised conversation (for the next call's prefix check)
    prompt_text: str | None = None
    extends: bool = False  # whether it reused the previous call's tokens
    model: str = "policy"
    actor: str = ""  # whose call (a seat of a game): each actor's calls are its own sample


def _content(message: dict) -> str:
    content = message.get("content")
    if content is None:
        return ""
    if isinstance(content, list):  # content parts: only text is served
        return "".join(part.get("text", "") for part in content if isinstance(part, dict))
    return str(content)


def _normal(message) -> tuple:
    if not isinstance(message, dict) or "role" not in message:
        raise BadRequest("each message must be an object with a 'role'")
    calls = message.get("tool_calls") or []
    if not isinstance(calls, list) or not all(isinstance(c, dict) for c in calls):
        raise BadRequest("tool_calls must be a list of objects")
    calls = tuple(((c.get("function") or {}).get("name"), (c.get("function") or {}).get("arguments")) for c in calls)
    return message["role"], _content(message), calls


def _limits(body: dict) -> tuple[int | None, list[str]]:
    if body.get("n", 1) != 1:
        raise BadRequest("n must be 1 (an episode's samples are its own calls)")
    if body.get("stream"):
        raise BadRequest("stream is not served: ask without it")
    limit = body.get("max_completion_tokens", body.get("max_tokens"))
    if limit is not None and (not isinstance(limit, int) or limit < 1):
        raise BadRequest("max_tokens must be a positive integer")
    stop = body.get("stop") or []
    stop = [stop] if isinstance(stop, str) else stop
    if not isinstance(stop, list) or not all(isinstance(s, str) and s for s in stop):
        raise BadRequest("stop must be a non-empty string or a list of them")
    return limit, stop


def _extended(kind: str, priors: list[Prior], normal: list | None, prompt) -> Prior | None:
    """The latest earlier call this request extends (conversations may interleave: two seats of a game)."""
    for prior in reversed(priors):
        if kind == "chat" and len(normal) > len(prior.key) and tuple(normal[:len(prior.key)]) == prior.key:
            return prior
        if kind == "completion" and isinstance(prompt, str) and prompt.startswith(prior.key):
            return prior
    return None


def render(engine, kind: str, body: dict, priors: list[Prior]) -> Rendered:
    """The request's prompt ids (reusing an earlier call's when the request extends it); ``BadRequest`` if
    malformed."""
    limit, stop = _limits(body)
    logprobs = bool(body.get("logprobs"))
    model = str(body.get("model", "policy"))
    if kind == "chat":
        messages = body.get("messages")
        if not isinstance(messages, list) or not messages:
            raise BadRequest("messages must be a non-empty list")
        normal = [_normal(m) for m in messages]
        tools = body.get("tools") or None
        prior = _extended(kind, priors, normal, None)
        if prior is not None:
            added = [{**m, "content": _content(m)} for m in messages[len(prior.key):]]
            try:
                ids = prior.ids + observation_ids(engine.tokenizer, _delta(engine), added, "user", prior.eos)
            except Exception as e:  # noqa: BLE001 - a conversation the template refuses is the request's fault
                raise BadRequest(f"the model's chat template cannot render these messages: {e}") from None
            return Rendered(kind, ids, limit, stop, bool(tools), logprobs, normal, extends=True, model=model)
        return Rendered(kind, _chat_ids(engine.tokenizer, messages, tools), limit, stop, bool(tools), logprobs,
                        normal, model=model)
    prompt = body.get("prompt")
    if isinstance(prompt, list) and len(prompt) == 1 and isinstance(prompt[0], (str, list)):
        prompt = prompt[0]  # (the SDK sends a batch of one as a list)
    if isinstance(prompt, list) and prompt and all(isinstance(t, int) for t in prompt):
        vocab = len(engine.tokenizer)
        if not all(0 <= t < vocab for t in prompt):
            raise BadRequest(f"prompt token ids must lie in [0, {vocab})")
        return Rendered(kind, list(prompt), limit, stop, False, logprobs, model=model)
    if not isinstance(prompt, str) or not prompt:
        raise BadRequest("prompt must be a non-empty string or a list of token ids")
    prior = _extended(kind, priors, None, prompt)
    if prior is not None:
        added = engine.tokenizer.encode(prompt[len(prior.key):], add_special_tokens=False)
        return Rendered(kind, prior.ids + list(added), limit, stop, False, logprobs, prompt_text=prompt,
                        extends=True, model=model)
    return Rendered(kind, list(engine.tokenizer.encode(prompt)), limit, stop, False, logprobs, prompt_text=prompt,
                    model=model)


def _delta(engine):
    if not getattr(engine.tokenizer, "chat_template", None):
        return None
    if engine._delta is None:
        from rlreason.rollout.turns import ChatDelta

        engine._delta = ChatDelta(engine.tokenizer)
    return engine._delta


def _chat_ids(tokenizer, messages: list[dict], tools) -> list[int]:
    if not getattr(tokenizer, "chat_template", None):
        return list(tokenizer.encode("".join(_content(m) for m in messages)))
    try:
        text = tokenizer.apply_chat_template(messages, tools=tools, add_generation_prompt=True, tokenize=False)
    except Exception as e:  # noqa: BLE001 - a conversation the template refuses is the request's fault
        raise BadRequest(f"the model's chat template cannot render these messages: {e}") from None
    return list(tokenizer.encode(text, add_special_tokens=False))


@dataclass
class Sampled:
    """The engine's answer to a call."""

    ids: list[int]
    logprobs: list[float]
    text: str  # without a stop string that ended it (OpenAI's convention)
    stop: str | None  # the stop string that ended it
    finish: str  # "stop" or "length"
    eos: bool
    version: int = 0
    tokens: list[str] = field(default_factory=list)


def tool_calls(text: str) -> tuple[str | None, list[dict]]:
    """Hermes-format tool calls in ``text``: the text around them, and the calls as OpenAI ``tool_calls``."""
    calls = []
    for i, match in enumerate(_TOOL_CALL.finditer(text)):
        try:
            call = json.loads(match[1])
            name, arguments = call["name"], call.get("arguments", {})
        except (ValueError, KeyError, TypeError):
            continue  # (a malformed call stays in the content: the agent sees what the model wrote)
        calls.append({"id": f"call_{uuid.uuid4().hex[:12]}_{i}", "type": "function",
                      "function": {"name": str(name), "arguments": json.dumps(arguments)
                                   if not isinstance(arguments, str) else arguments}})
    if not calls:
        return text, []
    rest = _TOOL_CALL.sub("", text).strip()
    return rest or None, calls


def response(rendered: Rendered, sampled: Sampled) -> tuple[dict, object]:
    """The OpenAI response body, and the key a later call extends (``Prior.key``)."""
    usage = {"prompt_tokens": len(rendered.ids), "completion_tokens": len(sampled.ids),
             "total_tokens": len(rendered.ids) + len(sampled.ids)}
    common = {"created": int(time.time()), "model": rendered.model, "usage": usage,
              "prompt_token_ids": rendered.ids}
    logprobs = None
    if rendered.logprobs:
        logprobs = {"content": [{"token": t, "logprob": lp, "bytes": None, "top_logprobs": []}
                                for t, lp in zip(sampled.tokens, sampled.logprobs)]}
    if rendered.kind == "completion":
        choice = {"index": 0, "text": sampled.text, "finish_reason": sampled.finish, "logprobs": logprobs,
                  "token_ids": sampled.ids}
        key = rendered.prompt_text + sampled.text + (sampled.stop or "") if rendered.prompt_text else None
        return {"id": f"cmpl-{uuid.uuid4().hex}", "object": "text_completion", "choices": [choice], **common}, key
    content, calls = tool_calls(sampled.text) if rendered.tools else (sampled.text, [])
    message = {"role": "assistant", "content": content}
    if calls:
        message["tool_calls"] = calls
    finish = "tool_calls" if calls and sampled.finish == "stop" else sampled.finish
    choice = {"index": 0, "message": message, "finish_reason": finish, "logprobs": logprobs,
              "token_ids": sampled.ids}
    key = (*rendered.messages, _normal(message))
    return {"id": f"chatcmpl-{uuid.uuid4().hex}", "object": "chat.completion", "choices": [choice], **common}, key
