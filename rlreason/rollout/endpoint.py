"""An OpenAI-compatible endpoint in front of a rollout engine, for agents written against the OpenAI SDK.

It serves ``POST /e/<episode>/v1/chat/completions`` and ``/completions`` (and ``GET .../models``) on its own thread
and event loop. A request is checked here (the run's key as ``Authorization: Bearer``, a live episode, a JSON body)
and then handed to the engine's episode loop (``inbox``), which samples it in its running batch and answers through
``Call.answer``. Everything else (tokens, recording, the response's content) is the loop's business
(``rlreason.rollout.agent_calls``). The agents themselves run on a second thread and event loop (``Agents``), so a
slow agent cannot stall the server.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import hmac
import inspect
import json
import queue
import secrets
import threading
from dataclasses import dataclass, field

from rlreason.envs.agent import ACTOR

KINDS = {"chat/completions": "chat", "completions": "completion"}


@dataclass
class Call:
    """One request of an episode, waiting for the engine."""

    episode: str
    kind: str  # "chat" or "completion"
    body: dict
    loop: asyncio.AbstractEventLoop
    reply: asyncio.Future = field(repr=False)
    actor: str = ""  # the X-Rlreason-Actor header: whose turn (a seat of a game; rlreason.envs.agent.seat)

    def answer(self, status: int, payload: dict) -> None:
        """Answer from any thread (the engine's)."""
        def put() -> None:
            if not self.reply.done():
                self.reply.set_result((status, payload))

        self.loop.call_soon_threadsafe(put)


def error(status: int, message: str, kind: str = "invalid_request_error") -> tuple[int, dict]:
    return status, {"error": {"message": message, "type": kind, "code": status}}


def _loop_thread(name: str) -> asyncio.AbstractEventLoop:
    loop = asyncio.new_event_loop()
    threading.Thread(target=loop.run_forever, name=name, daemon=True).start()
    return loop


class Endpoint:
    """The server. ``open(eid)`` / ``close(eid)`` mark the episodes whose requests are served; ``inbox`` holds their
    calls for the engine."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self.key = "rlr-" + secrets.token_urlsafe(24)
        self.inbox: queue.Queue[Call] = queue.Queue()
        self.live: set[str] = set()
        self.refused = 0  # requests answered with an error before reaching the engine
        self.loop = _loop_thread("rlreason-endpoint")
        self.host, self.port = host, asyncio.run_coroutine_threadsafe(self._serve(host, port), self.loop).result(30)

    def url(self, episode: str) -> str:
        host = "127.0.0.1" if self.host in ("0.0.0.0", "::") else self.host
        return f"http://{host}:{self.port}/e/{episode}/v1"

    def open(self, episode: str) -> None:
        self.live.add(episode)

    def close(self, episode: str) -> None:
        self.live.discard(episode)

    async def _serve(self, host: str, port: int) -> int:
        from aiohttp import web

        app = web.Application(client_max_size=64 * 2**20)
        app.router.add_post("/e/{episode}/v1/{path:.*}", self._post)
        app.router.add_get("/e/{episode}/v1/models", self._models)
        app.router.add_route("*", "/{tail:.*}", self._unknown)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, host, port)
        await site.start()
        return site._server.sockets[0].getsockname()[1]

    def _refuse(self, request, status: int, message: str, kind: str = "invalid_request_error"):
        from aiohttp import web

        self.refused += 1
        code, payload = error(status, message, kind)
        return web.json_response(payload, status=code)

    def _checked(self, request):
        """An error response for a request without the run's key or outside a live episode (else None)."""
        given = request.headers.get("Authorization", "").removeprefix("Bearer ").strip()
        if not hmac.compare_digest(given.encode(), self.key.encode()):
            return self._refuse(request, 401, "missing or wrong API key (the run's key is given to its agents)",
                                "authentication_error")
        if request.match_info["episode"] not in self.live:
            return self._refuse(request, 404, "no episode under way at this address: the endpoint serves requests "
                                "of running episodes only", "not_found_error")
        return None

    async def _models(self, request):
        from aiohttp import web

        refused = self._checked(request)
        return refused or web.json_response({"object": "list", "data": [{"id": "policy", "object": "model"}]})

    async def _unknown(self, request):
        return self._refuse(request, 404, f"{request.method} {request.path} is not served (POST "
                            "/e/<episode>/v1/chat/completions or /completions)", "not_found_error")

    async def _post(self, request):
        from aiohttp import web

        refused = self._checked(request)
        if refused is not None:
            return refused
        kind = KINDS.get(request.match_info["path"].strip("/"))
        if kind is None:
            return self._refuse(request, 404, f"/{request.match_info['path']} is not served (chat/completions, "
                                "completions)", "not_found_error")
        try:
            body = json.loads(await request.read())
        except (ValueError, UnicodeDecodeError) as e:
            return self._refuse(request, 400, f"the body is not JSON: {e}")
        if not isinstance(body, dict):
            return self._refuse(request, 400, "the body must be a JSON object")
        loop = asyncio.get_running_loop()
        call = Call(request.match_info["episode"], kind, body, loop, loop.create_future(),
                    request.headers.get(ACTOR, ""))
        self.inbox.put(call)
        status, payload = await call.reply
        return web.json_response(payload, status=status)

    def shutdown(self) -> None:
        try:
            asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self.loop).result(10)
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)


class Agents:
    """Runs agent programs (``async def run(client, problem)``, or a plain function with a blocking client) on their
    own thread and event loop; ``start`` returns a ``concurrent.futures.Future`` of the program's result."""

    def __init__(self) -> None:
        self.loop = _loop_thread("rlreason-agents")
        self.pool = concurrent.futures.ThreadPoolExecutor(64, thread_name_prefix="rlreason-agent")

    def start(self, program, problem, base_url: str, key: str, timeout_s: float) -> concurrent.futures.Future:
        import openai

        options = {"base_url": base_url, "api_key": key, "max_retries": 0, "timeout": timeout_s}
        if inspect.iscoroutinefunction(program):
            async def episode():
                async with openai.AsyncOpenAI(**options) as client:
                    return await program(client, problem)

            return asyncio.run_coroutine_threadsafe(episode(), self.loop)

        def blocking():
            with openai.OpenAI(**options) as client:
                return program(client, problem)

        return self.pool.submit(blocking)

    def stop(self, future: concurrent.futures.Future) -> None:
        """Cancel a program that overran (a coroutine is cancelled at its next await; a blocking one runs on, its
        requests refused)."""
        future.cancel()

    def shutdown(self) -> None:
        self.pool.shutdown(wait=False, cancel_futures=True)
        self.loop.call_soon_threadsafe(self.loop.stop)
