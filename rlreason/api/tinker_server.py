"""``rlreason serve-api``: Tinker's HTTP protocol over a primitive-API backend, so that the ``tinker`` SDK and an
unmodified tinker-cookbook loop train against a local run (``ServiceClient(base_url="http://127.0.0.1:PORT")``,
any ``TINKER_API_KEY`` starting ``tml-``).

Served: sessions, one training client, forward(_backward) with the registered losses, optim_step (Adam), save /
load state, samplers, sample and compute_logprobs (docs/primitives.md lists them). Anything else gets one 400 that
the SDK raises without retrying: "rlreason serve-api does not support <call>".

One worker thread runs the backend's calls in arrival order (the order the SDK submits them); concurrent sample
requests with the same parameters become one ``backend.sample``. Samplers sample the weights last synced.
"""

from __future__ import annotations

import asyncio
import concurrent.futures as cf
import itertools
import logging
import math
import os
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response

from rlreason.api import tinker_types as tt
from rlreason.algorithms.primitive_losses import LOSSES
from rlreason.api.records import APIError, Datum

log = logging.getLogger(__name__)

PROTO = "application/x-protobuf"
POLL_S = 30.0  # retrieve_future waits this long before "try_again" (the SDK's poll timeout is 45 s)
BATCH_S = 0.02  # how long a sample request waits for others to share its backend call
KEEP_FUTURES = 10_000  # finished results kept for retrieval (a retried poll may ask twice)


@dataclass
class _Job:
    run: Callable[[list], list]  # payloads -> one result each (bytes: protobuf, dict: JSON)
    payload: object
    key: object = None  # consecutive jobs with the same non-None key run as one call
    future: cf.Future = field(default_factory=cf.Future)


class Worker:
    """One thread that runs the backend's calls in arrival order."""

    def __init__(self) -> None:
        self._jobs: deque[_Job] = deque()
        self._cond = threading.Condition()
        threading.Thread(target=self._loop, name="serve-api-worker", daemon=True).start()

    def submit(self, run: Callable[[list], list], payload: object, key: object = None) -> cf.Future:
        job = _Job(run, payload, key)
        with self._cond:
            self._jobs.append(job)
            self._cond.notify()
        return job.future

    def _take(self) -> list[_Job]:
        with self._cond:
            while not self._jobs:
                self._cond.wait()
            key = self._jobs[0].key
        if key is not None:
            time.sleep(BATCH_S)
        with self._cond:
            jobs = [self._jobs.popleft()]
            while key is not None and self._jobs and self._jobs[0].key == key:
                jobs.append(self._jobs.popleft())
        return jobs

    def _loop(self) -> None:
        while True:
            jobs = self._take()
            for job, result in zip(jobs, self._run(jobs)):
                job.future.set_result(result)

    def _run(self, jobs: list[_Job]) -> list:
        try:
            return jobs[0].run([j.payload for j in jobs])
        except APIError as e:  # one request's bad input fails a shared call: run them apart to fail only it
            return [tt.failure(e)] if len(jobs) == 1 else [r for j in jobs for r in self._run([j])]
        except BaseException as e:  # noqa: BLE001 - one failed call must not end the worker
            return [tt.failure(e)] * len(jobs)


class TinkerServer:
    """The protocol's state: sessions, the one training client, samplers, saved paths and pending futures."""

    def __init__(self, backend, aliases: tuple[str, ...] = (), default_max_tokens: int = 1024) -> None:
        self.backend, self.worker = backend, Worker()
        self.model_dir = tt.sdk_model_dir(backend.model_dir)
        self.names = {backend.model_name, str(backend.model_dir), os.path.realpath(backend.model_dir), *aliases}
        self.default_max_tokens = default_max_tokens
        self.model_id: str | None = None
        self.samplers: dict[str, str | None] = {}  # sampling session -> its tinker path (None: base model)
        self.sampler_paths: set[str] = set()
        self.futures: dict[str, cf.Future] = {}
        self.steps, self._ids, self._lock = 0, itertools.count(1), threading.Lock()  # (steps: weight changes)

    # -- futures ---------------------------------------------------------------------------------------------
    def register(self, future: cf.Future) -> str:
        with self._lock:  # (the event loop and request threads both register)
            request_id = f"req-{next(self._ids)}"
            self.futures[request_id] = future
            if len(self.futures) > KEEP_FUTURES:
                for old in [r for r, f in self.futures.items() if f.done()][:len(self.futures) - KEEP_FUTURES]:
                    del self.futures[old]
        return request_id

    def single(self, fn: Callable[[], object]) -> str:
        return self.register(self.worker.submit(lambda payloads: [fn()], None))

    async def retrieve(self, body: dict) -> Response:
        request_id = body.get("request_id", "")
        future = self.futures.get(request_id)
        if future is None:
            return JSONResponse({"error": f"unknown request_id {request_id!r} (finished long ago, or another "
                                 "server's)", "category": "user"})
        await asyncio.wait({asyncio.wrap_future(future)}, timeout=POLL_S)
        if not future.done():
            return JSONResponse({"type": "try_again", "request_id": request_id, "queue_state": "active"})
        result = future.result()
        return Response(result, media_type=PROTO) if isinstance(result, bytes) else JSONResponse(result)

    # -- model -----------------------------------------------------------------------------------------------
    def _check_base(self, base_model: str | None) -> None:
        if base_model is not None and base_model not in self.names:
            raise APIError(f"base_model {base_model!r}: this server trains {self.backend.model_name!r} "
                           f"({self.model_dir}); pass that (or the directory) as base_model")

    def _claim(self, model_id: str) -> None:
        with self._lock:
            if self.model_id is not None:
                raise APIError(f"the run already has a training client ({self.model_id}): rlreason serve-api "
                               "serves one per server (restart it for a fresh one)")
            self.model_id = model_id

    def _check_model(self, model_id: str | None) -> None:
        if model_id != self.model_id:
            raise APIError(f"unknown model_id {model_id!r} (this server's training client: {self.model_id})")

    def create_model(self, body: dict) -> dict:
        self._check_base(body.get("base_model"))
        optimizer = (body.get("optimizer_config") or {}).get("type", "adamw")
        if optimizer != "adamw":
            raise tt.Unsupported(f"the {optimizer!r} optimizer (Adam only)")
        rank, served = (body.get("lora_config") or {}).get("rank"), self.backend.lora_rank
        if served and rank is not None and rank != served:
            raise APIError(f"create_lora_training_client(rank={rank}): this server trains a rank-{served} LoRA "
                           f"adapter; pass rank={served}")
        self._claim(f"{body['session_id']}:train:{body['model_seq_id']}")
        future: cf.Future = cf.Future()
        future.set_result({"model_id": self.model_id, "type": "create_model"})
        return {"request_id": self.register(future)}

    def get_info(self, body: dict) -> dict:
        self._check_model(body.get("model_id"))
        rank = self.backend.lora_rank or None
        return {"type": "get_info", "model_id": self.model_id, "is_lora": bool(rank), "lora_rank": rank,
                "model_name": self.model_dir, "optimizer_config": {"type": "adamw"},
                "model_data": {"model_name": self.model_dir, "tokenizer_id": self.model_dir}}

    def load_weights(self, body: dict) -> dict:
        path = body.get("path", "")
        parts = path.removeprefix("tinker://").split("/")
        if not path.startswith("tinker://") or len(parts) != 3 or parts[1] != "weights":
            raise APIError(f"load: {path!r} is not a state path (tinker://RUN/weights/NAME from save_state)")
        created = body.get("session_id") is not None
        if created:  # create_training_client_from_state*: the load is the new client's first request
            self._check_base(body.get("base_model"))
            self._claim(f"{body['session_id']}:train:{body.get('model_seq_id', 0)}")
        else:
            self._check_model(body.get("model_id"))

        def load() -> dict:
            try:
                self.backend.load(parts[2], optimizer=bool(body.get("optimizer", True)))
                self.steps += 1  # (the weights are no longer the base model's)
            except BaseException:
                if created:
                    self.model_id = None
                raise
            return {"path": path, "model_id": self.model_id, "type": "load_weights"}
        return {"request_id": self.single(load), "model_id": self.model_id}

    # -- training --------------------------------------------------------------------------------------------
    def forward_backward(self, request: tt.ForwardBackward) -> dict:
        self._check_model(request.model_id)
        if request.loss_fn not in LOSSES.names():
            raise tt.Unsupported(f"loss_fn {request.loss_fn!r} (supported: {', '.join(LOSSES.names())})")
        if not request.data:
            raise APIError("forward_backward: no data")
        batch = [tt.to_datum(i, tokens, inputs, request.loss_fn) for i, (tokens, inputs) in enumerate(request.data)]
        call = self.backend.forward if request.forward_only else self.backend.forward_backward
        kwargs = {"loss_config": request.loss_config} if request.loss_config else {}

        def run() -> bytes:
            result = call(batch, request.loss_fn, **kwargs)
            logprobs = [row[1:len(d.tokens)] for row, d in zip(result.logprobs, batch)]
            return tt.encode_forward_backward_output(logprobs, tt.tinker_metrics(result.loss, result.metrics))
        return {"request_id": self.single(run), "model_id": self.model_id}

    def optim_step(self, body: dict) -> dict:
        self._check_model(body.get("model_id"))
        adam = body.get("adam_params")
        if adam is None:
            raise tt.Unsupported("optim_step with a non-Adam optimizer")
        clip = float(adam.get("grad_clip_norm", 0.0))
        args = [float(adam.get(k, d)) for k, d in
                (("learning_rate", 1e-4), ("beta1", 0.9), ("beta2", 0.95), ("eps", 1e-12), ("weight_decay", 0.0))]

        def step() -> dict:
            out = self.backend.optim_step(*args, clip)  # (0: no clipping, in Tinker and here)
            self.steps += 1
            return {"metrics": {k: float(v) for k, v in (out or {}).items() if isinstance(v, (int, float))}}
        return {"request_id": self.single(step), "model_id": self.model_id}

    def save_state(self, body: dict) -> dict:
        self._check_model(body.get("model_id"))
        name = body.get("path") or f"state-{next(self._ids)}"

        def save() -> dict:
            self.backend.save(name)
            return {"path": f"tinker://{self.model_id}/weights/{name}", "type": "save_weights"}
        return {"request_id": self.single(save), "model_id": self.model_id}

    def save_for_sampler(self, body: dict) -> dict:
        self._check_model(body.get("model_id"))
        name = body.get("path")

        def publish() -> dict:
            self.backend.sync()
            if name is None:  # save_weights_and_get_sampling_client: an ephemeral sampler
                session = f"sampler-{uuid.uuid4().hex[:12]}"
                self.samplers[session] = f"tinker://{self.model_id}/sampler_weights/{session}"
                return {"sampling_session_id": session, "type": "save_weights_for_sampler"}
            path = f"tinker://{self.model_id}/sampler_weights/{name}"
            self.sampler_paths.add(path)
            return {"path": path, "type": "save_weights_for_sampler"}
        return {"request_id": self.single(publish), "model_id": self.model_id}

    # -- sampling --------------------------------------------------------------------------------------------
    def create_sampling_session(self, body: dict) -> dict:
        path = body.get("model_path")
        if path is not None and path not in self.sampler_paths:
            raise APIError(f"model_path {path!r}: not a sampler path this server returned (save_weights_for_sampler)")
        if path is None:
            self._check_base(body.get("base_model"))
        session = f"sampler-{uuid.uuid4().hex[:12]}"
        self.samplers[session] = path
        return {"type": "create_sampling_session", "sampling_session_id": session}

    def get_sampler(self, session: str) -> dict:
        if session not in self.samplers:
            raise APIError(f"unknown sampling session {session!r}")
        return {"sampler_id": session, "base_model": self.model_dir, "model_path": self.samplers[session]}

    def asample(self, body: dict) -> dict:
        session = body.get("sampling_session_id")
        if session not in self.samplers:
            raise APIError(f"unknown sampling session {session!r} (create_sampling_client or "
                           "save_weights_and_get_sampling_client first)")
        if self.samplers[session] is None and self.steps:
            raise tt.Unsupported("sampling the base model after an optim_step (one policy is served: sample from "
                                 "save_weights_and_get_sampling_client())")
        for option in ("topk_prompt_logprobs", "topk_sample_logprobs", "prompt_alt_tokens_k", "target_prompt_logprobs"):
            if body.get(option):
                raise tt.Unsupported(f"SamplingClient.sample({option}=...)")
        params = body.get("sampling_params") or {}
        if params.get("top_k") not in (None, -1, 0):
            raise tt.Unsupported("SamplingParams(top_k=...)")
        n, stop = int(body.get("num_samples", 1)), params.get("stop")
        stop = [stop] if isinstance(stop, str) else stop
        key = (n, int(params.get("max_tokens") or self.default_max_tokens), float(params.get("temperature", 1.0)),
               float(params.get("top_p", 1.0)), None if stop is None else tuple(stop), params.get("seed"))
        last_n = body.get("prompt_logprobs_last_n") if body.get("prompt_logprobs") else 0
        payload = (key, tt.prompt_tokens(body.get("prompt") or {}), last_n)
        request_id = self.register(self.worker.submit(self._sample, payload, key))
        return {"request_id": request_id, "sample_sequence_ids": [f"{request_id}:{i}" for i in range(n)]}

    def _sample(self, payloads: list) -> list:
        n, max_tokens, temperature, top_p, stop, seed = payloads[0][0]
        groups = self.backend.sample([p[1] for p in payloads], n=n, max_tokens=max_tokens, temperature=temperature,
                                     top_p=top_p, stop=None if stop is None else list(stop), seed=seed)
        out = []
        for (_, prompt, last_n), group in zip(payloads, groups):
            try:
                seqs = [(s.tokens, s.logprobs, "length" if s.finish_reason == "length" else "stop") for s in group]
                lps = None if last_n == 0 else self._prompt_logprobs(prompt, last_n)
                out.append(tt.encode_sample_response(seqs, lps))
            except Exception as e:  # noqa: BLE001 - this request fails, the others in the call stand
                out.append(tt.failure(e))
        return out

    def _prompt_logprobs(self, prompt: list[int], last_n: int | None) -> list[float]:
        """The prompt's logprobs under the current weights (NaN for the first token, and before ``last_n``)."""
        values = [math.nan] * len(prompt)
        if len(prompt) > 1:
            result = self.backend.forward([Datum(list(prompt), {"weights": [0.0] * len(prompt)})], "cross_entropy")
            values[1:] = result.logprobs[0][1:len(prompt)]
        if last_n:
            cut = max(0, len(prompt) - last_n)
            values[:cut] = [math.nan] * cut
        return values

    # -- sessions --------------------------------------------------------------------------------------------
    def create_session(self, body: dict) -> dict:
        return {"type": "create_session", "session_id": f"session-{uuid.uuid4().hex[:12]}",
                "info_message": f"rlreason serve-api: training {self.backend.model_name} ({self.model_dir})"}

    def capabilities(self) -> dict:
        return {"supported_models": [{"model_name": self.model_dir, "trainable": True, "sampleable": True}]}


def _refuse(message: str) -> JSONResponse:
    return JSONResponse({"detail": message}, status_code=400, headers={"x-should-retry": "false"})


async def _answer(fn: Callable, *args, thread: bool = False) -> JSONResponse:
    """``fn(*args)`` as JSON, or one 400 (never a 5xx, which the SDK would retry for minutes)."""
    try:
        return JSONResponse(await asyncio.to_thread(fn, *args) if thread else fn(*args))
    except APIError as e:
        return _refuse(str(e))
    except Exception as e:  # a malformed request
        log.warning("serve-api: bad request", exc_info=e)
        return _refuse(f"rlreason serve-api could not read the request ({type(e).__name__}: {e})")


def _json_route(handler: Callable[[dict], dict]):
    async def route(request: Request) -> Response:
        raw = await request.body()
        try:
            body = await request.json() if raw else {}
        except ValueError:
            return _refuse("rlreason serve-api: the request body is not JSON")
        return await _answer(handler, body)
    return route


def create_app(backend, aliases: tuple[str, ...] = (), default_max_tokens: int = 1024) -> FastAPI:
    """The Tinker API over ``backend`` (see the module). ``aliases``: more names accepted as ``base_model``
    besides the backend's model name and directory (a cookbook recipe may need a name its tables know)."""
    server = TinkerServer(backend, tuple(aliases), default_max_tokens)
    app = FastAPI(title="rlreason serve-api (Tinker protocol)", docs_url=None, redoc_url=None)
    app.state.tinker = server
    constant = {"client/config": tt.CLIENT_CONFIG, "client/dynamic_config": {"refresh_interval_sec": 3600},
                "session_heartbeat": {"type": "session_heartbeat"}, "telemetry": {"status": "accepted"}}
    for name, answer in constant.items():
        app.add_api_route(f"/api/v1/{name}", _json_route(lambda body, a=answer: a), methods=["POST"])
    handlers = {"create_session": server.create_session, "create_model": server.create_model,
                "get_info": server.get_info, "create_sampling_session": server.create_sampling_session,
                "asample": server.asample, "optim_step": server.optim_step, "save_weights": server.save_state,
                "save_weights_for_sampler": server.save_for_sampler, "load_weights": server.load_weights}
    for name, handler in handlers.items():
        app.add_api_route(f"/api/v1/{name}", _json_route(handler), methods=["POST"])

    @app.post("/api/v1/retrieve_future")
    async def retrieve(request: Request) -> Response:
        return await server.retrieve(await request.json())

    @app.post("/api/v1/forward_backward")
    async def forward_backward(request: Request) -> Response:
        body = await request.body()
        if request.headers.get("content-encoding"):
            return _refuse(str(tt.Unsupported("compressed forward_backward requests")))
        return await _answer(lambda: server.forward_backward(tt.decode_forward_backward(body)), thread=True)

    @app.get("/api/v1/samplers/{session}")
    async def sampler(session: str) -> Response:
        return await _answer(server.get_sampler, session)

    app.add_api_route("/api/v1/get_server_capabilities", lambda: server.capabilities(), methods=["GET"])
    app.add_api_route("/api/v1/healthz", lambda: {"status": "ok"}, methods=["GET"])
    app.add_api_route("/api/v1/sessions/{session_id}/finish", lambda session_id: {}, methods=["POST"])

    @app.api_route("/{path:path}", methods=["GET", "POST", "PUT", "PATCH", "DELETE"])
    async def unsupported(path: str, request: Request) -> Response:
        return _refuse(str(tt.Unsupported(tt.UNSUPPORTED.get(f"/{path}", f"{request.method} /{path}"))))
    return app


def serve(backend, host: str = "127.0.0.1", port: int = 8000, aliases: tuple[str, ...] = (),
          log_level: str = "warning") -> None:
    """Serve ``create_app(backend)`` until interrupted."""
    import uvicorn

    print(f"rlreason serve-api: Tinker API at http://{host}:{port} for {backend.model_name} "
          f"(ServiceClient(base_url='http://{host}:{port}'), TINKER_API_KEY=tml-<anything>)", flush=True)
    app = create_app(backend, aliases, backend.cfg.rollout.max_tokens)
    uvicorn.run(app, host=host, port=port, log_level=log_level, access_log=False)
