"""Agent programs for the tests, written only against the OpenAI SDK (named ``plugins.agents:function``)."""

import asyncio
import re

from rlreason.envs.calculator import evaluate

CALL = re.compile(r"<calc>(.*?)$", re.DOTALL)


async def calculator(client, problem):
    """The calculator environment as an agent: the model's <calc> calls are run here (at most two per episode) and
    the value goes back as the next message; returns the reward."""
    messages = [{"role": "user", "content": problem.prompt}]
    for _ in range(3):
        reply = await client.chat.completions.create(model="policy", messages=messages, max_tokens=32,
                                                     stop=["</calc>"])
        text = reply.choices[0].message.content
        messages.append({"role": "assistant", "content": text})
        call = CALL.search(text)
        if call is None or len(messages) > 4:
            break
        try:
            value = f"{evaluate(call[1])}\n"
        except ValueError:
            value = "error\n"
        messages.append({"role": "user", "content": value})
    found = re.findall(r"####\s*(-?\d+)", text)
    return float(bool(found) and int(found[-1]) == int(problem.reference))


def completions(client, problem):
    """A blocking program on the completions API: the prompt grows by the text it got and the call's stop string;
    returns the final text for the task's verifier."""
    prompt = problem.prompt
    for _ in range(2):
        reply = client.completions.create(model="policy", prompt=prompt, max_tokens=24, stop=["</calc>"])
        text = reply.choices[0].text
        prompt += text + ("</calc>1\n" if reply.choices[0].finish_reason == "stop" and "<calc>" in text else "")
    return text


async def rewrites(client, problem):
    """Two calls whose second does not extend the first (a new conversation): two rows of one sample."""
    for prompt in (problem.prompt, "again: " + problem.prompt):
        await client.completions.create(model="policy", prompt=prompt, max_tokens=8)
    return 1.0 if problem.id[-1] in "02468" else 0.0


async def raises(client, problem):
    await client.completions.create(model="policy", prompt=problem.prompt, max_tokens=4)
    raise RuntimeError("the agent's own bug")


async def hangs(client, problem):
    await asyncio.sleep(3600)


async def silent(client, problem):
    return 1.0


async def returns_nothing(client, problem):
    await client.completions.create(model="policy", prompt=problem.prompt, max_tokens=4)


SEEN: dict = {}  # problem id -> what its episodes' calls got back (the tests read it; in-process engines only)


async def two_tools(client, problem):
    """Exactly three model calls with a tool's answer between them (two tool calls per episode): the model's
    <calc> expression evaluated, or "error"; every reply's token ids are kept in SEEN."""
    messages = [{"role": "user", "content": problem.prompt}]
    got = SEEN.setdefault(problem.id, {}).setdefault(str(client.base_url), [])  # (one list per episode)
    for turn in range(3):
        reply = await client.chat.completions.create(model="policy", messages=messages, max_tokens=12,
                                                     stop=["</calc>"])
        choice = reply.choices[0]
        got.append((reply.model_extra["prompt_token_ids"], choice.model_extra["token_ids"]))
        messages.append({"role": "assistant", "content": choice.message.content})
        if turn < 2:
            call = CALL.search(choice.message.content or "")
            try:
                value = evaluate(call[1]) if call else "error"
            except ValueError:
                value = "error"
            messages.append({"role": "user", "content": f"{value}\n"})
    return float(str(problem.reference) in (choice.message.content or ""))


async def probes(client, problem):
    """Bad requests first (no key, another episode, a malformed body, malformed tool calls, an empty stop string,
    n=2), then a good one; the statuses it got are kept in SEEN."""
    import httpx
    import openai

    statuses = SEEN.setdefault(problem.id, [])
    base = str(client.base_url).rstrip("/")
    async with httpx.AsyncClient() as http:
        for url, headers, body in ((f"{base}/completions", {}, b'{"prompt": "x"}'),
                                   (base.rsplit("/e/", 1)[0] + "/e/nobody/v1/completions",
                                    {"Authorization": f"Bearer {client.api_key}"}, b'{"prompt": "x"}'),
                                   (f"{base}/completions", {"Authorization": f"Bearer {client.api_key}"}, b"{oops"),
                                   (f"{base}/chat/completions", {"Authorization": f"Bearer {client.api_key}"},
                                    b'{"messages": "not a list"}'),
                                   (f"{base}/chat/completions", {"Authorization": f"Bearer {client.api_key}"},
                                    b'{"messages": [{"role": "assistant", "content": "x", "tool_calls": ["x"]}]}'),
                                   (f"{base}/completions", {"Authorization": f"Bearer {client.api_key}"},
                                    b'{"prompt": "x", "stop": [""]}')):
            statuses.append((await http.post(url, headers=headers, content=body)).status_code)
    try:
        await client.completions.create(model="policy", prompt=problem.prompt, max_tokens=4, n=2)
    except openai.BadRequestError as e:
        statuses.append(e.status_code)
    await client.completions.create(model="policy", prompt=problem.prompt, max_tokens=4)
    return 1.0


async def two_seats(client, problem):
    """Two actors taking turns, each with its own conversation (two calls each); zero-sum rewards."""
    from rlreason.envs.agent import seat

    seats = {name: (seat(client, name), [{"role": "user", "content": f"{name}: {problem.prompt}"}]) for name in "ab"}
    for _ in range(2):
        for name, (own, messages) in seats.items():
            reply = await own.chat.completions.create(model="policy", messages=messages, max_tokens=6)
            messages += [{"role": "assistant", "content": reply.choices[0].message.content},
                         {"role": "user", "content": "go on\n"}]
    return {"a": 1.0, "b": -1.0}
