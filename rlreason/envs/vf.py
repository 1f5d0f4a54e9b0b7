"""The agent program that plays a ``verifiers`` environment's tasks (``rlreason.tasks.verifiers_envs``).

``run(client, problem)`` loads the module's environment once per process (``vf.load_environment``: its Taskset and,
when it exports one, its Env), and runs the problem's task as one episode with the rollout engine's endpoint as the
model (``vf.EvalClientConfig``: the episode's ``base_url`` and the run's key). verifiers puts its own recording proxy
in front of the model and relays every call; the engine records the tokens it samples, so the episode trains token
for token while the environment's rubric gives the reward (``trace.reward``).

The agent inside the episode is ``RlreasonHarness``, an in-process chat loop that calls without streaming (the
package's bundled harnesses stream and run through ``uv``); the runtime is the local subprocess one, never Prime's
remote sandbox. An episode verifiers reports as failed fails here too (counted, never trained).
"""

from __future__ import annotations

import os
import sys

KEY_VAR = "RLREASON_ENDPOINT_API_KEY"  # where verifiers reads the run's key (its runtimes drop *API_KEY* variables
# from the programs they start)
HARNESS = "rlreason_vf_harness"  # the id verifiers resolves our harness by (a top-level module name)
_ENVS: dict = {}
_SERVING: dict = {}  # module -> a future of the AsyncExitStack holding its env.serving() for this process


def _harness_module():
    """A module exporting the in-process harness, registered under ``HARNESS`` (verifiers imports harnesses by a
    top-level module name)."""
    if HARNESS in sys.modules:
        return sys.modules[HARNESS]
    import types

    import openai
    import verifiers.v1 as vf

    class RlreasonHarnessConfig(vf.HarnessConfig):
        pass

    class RlreasonHarness(vf.Harness[RlreasonHarnessConfig]):
        """The task's conversation, sent without streaming through verifiers' proxy; the reply ends the segment."""

        APPENDS_SYSTEM_PROMPT = True
        SUPPORTS_RESUME = True  # (a multi-turn Env resumes with the grown conversation)
        EXECUTES_CODE = False
        NEEDS_CONTAINER = False

        async def launch(self, ctx, trace, runtime, endpoint, secret, mcp_urls, data, **kwargs):
            from verifiers.v1.dialects.chat import message_to_wire

            system, prompt = self.resolve_prompt(data)
            messages = [{"role": "system", "content": system}] if system else []
            if isinstance(prompt, str):
                messages.append({"role": "user", "content": prompt})
            else:
                messages += [message_to_wire(m) for m in prompt or []]
            async with openai.AsyncOpenAI(base_url=endpoint, api_key=secret, max_retries=0) as client:
                await client.chat.completions.create(model=ctx.model, messages=messages)
            return vf.ProgramResult(exit_code=0, stdout="", stderr="")

    module = types.ModuleType(HARNESS)
    module.RlreasonHarness, module.RlreasonHarnessConfig = RlreasonHarness, RlreasonHarnessConfig
    module.__all__ = ["RlreasonHarness", "RlreasonHarnessConfig"]
    sys.modules[HARNESS] = module
    return module


def _environment(module: str):
    if module not in _ENVS:
        import verifiers.v1 as vf

        _harness_module()
        config = vf.resolve_env_config({"taskset": {"id": module}, "agent": {
            "harness": {"id": HARNESS}, "runtime": {"type": "subprocess"}}})
        _ENVS[module] = vf.load_environment(config)
    return _ENVS[module]


async def run(client, problem):
    """One episode of the problem's verifiers task against this episode's endpoint; returns its reward."""
    import verifiers.v1 as vf

    from rlreason.tasks.verifiers_envs import tasks_of

    where = problem.meta["verifiers"]
    env = _environment(where["module"])
    task = tasks_of(where["module"])[where["index"]]
    os.environ[KEY_VAR] = client.api_key
    ctx = vf.ModelContext(model="policy", client=vf.EvalClientConfig(base_url=str(client.base_url).rstrip("/"),
                                                                    api_key_var=KEY_VAR),
                          sampling=vf.SamplingConfig())
    await _serving(where["module"], env)
    try:
        episode = await env.run_episode(task, ctx)
    finally:
        await _forget(env, ctx.client)
    trace = episode.traces[0]
    if not getattr(episode, "ok", True) or trace.reward is None:
        errors = getattr(episode, "errors", None) or getattr(trace, "error", None) or "no reward"
        raise RuntimeError(f"the verifiers episode failed: {str(errors).splitlines()[0][:300]}")
    return float(trace.reward)


async def _serving(module: str, env) -> None:
    """The env serves (its recording proxy, its shared tools) from the first episode on, for the whole process:
    concurrent episodes share it (entering and leaving ``serving()`` per episode would tear it down under them)."""
    import asyncio
    import contextlib

    if module not in _SERVING:
        ready = _SERVING[module] = asyncio.get_running_loop().create_future()
        stack = contextlib.AsyncExitStack()
        try:
            await stack.enter_async_context(env.serving())
        except BaseException as e:
            del _SERVING[module]
            ready.set_exception(e)
            raise
        ready.set_result(stack)
    await asyncio.shield(_SERVING[module])


async def _forget(env, client_config) -> None:
    """Close the proxy's client for this episode's endpoint address (verifiers keeps one per address until serving
    ends; an address per episode would pile up). Best effort: it reads the proxy's own table."""
    key = client_config.model_dump_json()
    interception = getattr(env, "_interception", None)
    for server in getattr(interception, "servers", None) or [interception]:
        client = getattr(server, "clients", {}).pop(key, None) if server is not None else None
        if client is not None:
            try:
                await client.close()
            except Exception:  # noqa: BLE001 - closing a finished episode's client may not fail the episode
                pass
