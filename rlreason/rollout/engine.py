"""A vLLM engine that samples groups of completions with token ids and logprobs, and reloads weights in place.

``RolloutEngine`` is a plain class so tests can hold one in-process; the controller runs it as a Ray actor
(``ray.remote(RolloutEngine)``), one per rollout worker. On CPU it uses vLLM's in-process engine: it starts in
seconds instead of half a minute and halves memory (see README, "CPU notes").
"""

from __future__ import annotations

import gc
import os
import time
from dataclasses import dataclass

from rlreason.process_info import ActorInfo
from rlreason.rollout import episodes
from rlreason.rollout.episodes import EpisodeSpec
from rlreason.rollout.prompts import prompt_ids
from rlreason.rollout.population import PopulationServer
from rlreason.rollout.recovery import EngineRestarted
from rlreason.rollout.weight_channel import WeightReceiver
from rlreason.types import Completion, Problem, WeightUpdate


@dataclass(frozen=True)
class SamplingSpec:
    n: int
    max_tokens: int  # per completion; in a multi-turn episode, per model turn
    temperature: float = 1.0
    top_p: float = 1.0
    ignore_eos: bool = False  # always max_tokens (benchmarks)
    episode: EpisodeSpec | None = None  # limits and reward shaping of multi-turn episodes (the recipe's env.*)
    stop: tuple = ()  # strings or token ids that end a completion (kept in it); the primitive API's


def cpu_engine_env(rank: int, world: int, kv_cache_gib: int, reserved: int = 0) -> dict[str, str]:
    """Environment for a vLLM CPU engine: in-process executor, cores split evenly between ``world`` engines, after
    the first ``reserved`` cores (left to a learner that trains while the engines generate)."""
    first = min(reserved, (os.cpu_count() or 1) - 1)
    cores = (os.cpu_count() or 1) - first
    if world <= cores:
        per = cores // world
        bind = f"{first + rank * per}-{first + rank * per + per - 1}"
    else:
        per, bind = 1, "nobind"
    # OMP_NUM_THREADS: a Ray actor starts with 1, and vLLM's CPU worker cannot raise it after binding its threads:
    # left at 1, an engine in a Ray actor generated 1.6x slower than the same engine in a plain process.
    return {"OMP_NUM_THREADS": str(per), "VLLM_ENABLE_V1_MULTIPROCESSING": "0", "VLLM_CPU_OMP_THREADS_BIND": bind,
            "VLLM_CPU_NUM_OF_RESERVED_CPU": "0", "VLLM_CPU_KVCACHE_SPACE": str(kv_cache_gib),
            "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false", "VLLM_LOGGING_LEVEL": "WARNING"}


def _stops(stop: tuple) -> dict:
    """vLLM's arguments for stop strings and stop token ids (strings need the text: detokenized)."""
    words = [x for x in stop if isinstance(x, str)]
    ids = [x for x in stop if not isinstance(x, str)]
    return {"detokenize": bool(words), **({"stop": words, "include_stop_str_in_output": True} if words else {}),
            **({"stop_token_ids": ids} if ids else {})}


def _seeded(params, seed: int):
    params = params.clone()
    params.seed = seed
    return params


def _restarted_actor() -> bool:
    """Whether this process is a Ray actor that Ray restarted after it died."""
    try:
        import ray

        return ray.is_initialized() and ray.get_runtime_context().was_current_actor_reconstructed
    except Exception:  # noqa: BLE001 - not a Ray actor (a test holding the engine in-process)
        return False


class RolloutEngine(ActorInfo, WeightReceiver, PopulationServer):
    """Owns one ``vllm.LLM``. ``version`` is the policy version of the weights it currently serves."""

    def __init__(self, model_path: str, *, seed: int = 0, max_model_len: int = 256, dtype: str = "float32",
                 rank: int = 0, world: int = 1, kv_cache_gib: int = 1, lora_rank: int | None = None,
                 adapter: str | None = None, tensor_parallel: int = 1, gpus: float = 0.0,
                 max_loras: int = 2) -> None:
        """``lora_rank``: serve a LoRA policy of this rank (pushes then carry adapters); ``adapter``: the saved
        adapter to serve before the first push (else the base model, which a fresh adapter equals)."""
        for key, value in cpu_engine_env(rank, world, kv_cache_gib).items():
            os.environ.setdefault(key, value)
        from rlreason.registry import load_plugins

        load_plugins()
        import vllm

        self._vllm = vllm
        self.rank = rank
        self.version = 0
        self.restarted = _restarted_actor()  # its weights are the start's, not the run's: generate refuses
        lora = {}
        if lora_rank is not None:
            from rlreason.models.info import servable_lora_rank

            lora = {"enable_lora": True, "max_lora_rank": servable_lora_rank(lora_rank), "max_loras": max_loras}
        llm_class = vllm.LLM  # (its imports)
        gc.freeze()  # what is imported stays: vLLM's start-up collections then skip it (2.4 -> 1.2 s, tiny model)
        # tensor parallel (GPU): vLLM's own worker processes, one per GPU this actor holds
        parallel = {"tensor_parallel_size": tensor_parallel, "distributed_executor_backend": "mp"} \
            if tensor_parallel > 1 else {"distributed_executor_backend": "uni"}
        if 0 < gpus < 1:  # a GPU shared with a learner (ray.layout colocated): only this engine's share of it
            parallel["gpu_memory_utilization"] = 0.9 * gpus
        if gpus == 0:  # CPU: a prompt split over two steps (chunked prefill) makes vLLM rewind the request's
            # generator, which CPU generators cannot do: every seeded request (common random numbers) in a batch
            # past the step's 4096 tokens crashed the engine ("CPU Generator does not use offset"). Whole prompts
            # per step instead: the same speed here (tiny model, 2048 requests: 3.58 s against 3.59 s).
            parallel.update(enable_chunked_prefill=False, max_num_batched_tokens=max(4096, max_model_len))
        self.llm = llm_class(model=model_path, dtype=dtype, seed=seed + 1000 * rank, max_model_len=max_model_len,
                             enforce_eager=True, enable_prefix_caching=True, **parallel, **lora)
        self.tokenizer = self.llm.get_tokenizer()
        self.max_model_len = max_model_len
        self._delta = None  # the chat template's renderer of environment messages (made on first use)
        self._endpoint = None  # the agents' OpenAI-compatible endpoint (rlreason.rollout.agent_episodes)
        self.adapters = None
        if lora_rank is not None:
            from rlreason.rollout.adapters import AdapterVersions

            self.adapters = AdapterVersions(self.llm, adapter)
        self._loaders = {"full": self._load_full, "lora": self._load_adapter}
        self.team: dict = {}  # a team's members: name -> LoRARequest (None: the base model)
        self._params: dict = {}
        self._observations: dict = {}

    @property
    def _lora_request(self):
        return None if self.adapters is None else self.adapters.current

    def generate(self, problems: list[Problem], sampling: SamplingSpec, adapter: dict | None = None,
                 seeds: list[int] | None = None) -> list[list[Completion]]:
        """``sampling.n`` completions per problem, grouped per problem in input order. ``adapter``: tensors of an
        adapter of the policy's shape (an ES elite), served instead of the policy for this call; ``seeds``: one
        per problem (common random numbers: problems with the same seed sample with the same numbers)."""
        if self.restarted:
            raise EngineRestarted(f"rollout worker {self.rank} was restarted and has not been given weights yet")
        if adapter is None:
            return self._generate(problems, sampling, self._lora_request, seeds)
        if self.adapters is None or self.adapters.tensors is None:
            raise RuntimeError("serving another adapter needs a LoRA policy pushed into this engine (model.lora)")
        request = self.adapters.add_member("evaluated", adapter)
        try:
            return self._generate(problems, sampling, request)
        finally:
            self.adapters.drop_members([request])

    def _generate(self, problems: list[Problem], sampling: SamplingSpec, lora_request,
                  seeds: list[int] | None = None) -> list[list[Completion]]:
        """Groups of ``sampling.n`` completions (or multi-turn episodes) per problem: the episode loop
        (``rlreason.rollout.episodes``); ``lora_request``: one, or one per problem; ``seeds``: one per problem (its
        completions draw from seed, seed + 1, ...: vLLM's per-request generators)."""
        loras = lora_request if isinstance(lora_request, list) else [lora_request] * len(problems)
        return episodes.run(self, problems, sampling, loras, seeds)

    def serve_team(self, members: dict[str, str | None]) -> list[str]:
        """Serve a team's members for every later call (``rlreason.envs.team``): name -> a saved adapter directory,
        or None for the base model. Returns the names served."""
        from rlreason.rollout.adapters import load_members

        if any(path is not None for path in members.values()) and self.adapters is None:
            raise RuntimeError("serving adapters needs an engine started with LoRA (lora_rank)")
        self.team = load_members(self.llm, members, self.team)
        return sorted(self.team)

    def member_lora(self, env, default):
        """The adapter an episode's next turn is sampled with: the team member its environment names
        (``env.member``), else ``default`` (the policy's)."""
        name = getattr(env, "member", None)
        if name is None:
            return default
        if name not in self.team:
            raise ValueError(f"team member {name!r} is not served here (served: {', '.join(sorted(self.team))})")
        return self.team[name]

    def params(self, sampling: SamplingSpec, seed: int | None = None):
        """A group's sampling parameters (``sampling.n`` samples of one prompt)."""
        key = (sampling.n, sampling.max_tokens, sampling.temperature, sampling.top_p, sampling.ignore_eos, seed,
               sampling.stop)
        if key not in self._params:  # (requests with the same settings share one object: vLLM only reads it)
            if len(self._params) > 4096:  # per-problem seeds (ES) make new keys every generation
                self._params.clear()
            params = self._vllm.SamplingParams(n=sampling.n, max_tokens=sampling.max_tokens,
                                               temperature=sampling.temperature, top_p=sampling.top_p, top_k=-1,
                                               logprobs=0, ignore_eos=sampling.ignore_eos,
                                               # each completion is decoded once, below; flat logprobs: no dict per
                                               # token (together 20-25% of a tiny model's generation time)
                                               flat_logprobs=True, **_stops(sampling.stop))
            self._params[key] = params if seed is None else _seeded(params, seed)
        return self._params[key]

    def turn_params(self, sampling: SamplingSpec, env, max_tokens: int, seed: int | None = None, n: int = 1):
        """An episode turn (``n``: a group's first turns, one prompt), ending at EOS or at the environment's stop
        strings (kept in the output; stop strings need the text, so it is detokenized)."""
        return self._vllm.SamplingParams(n=n, max_tokens=max(1, max_tokens), temperature=sampling.temperature,
                                         top_p=sampling.top_p, top_k=-1, logprobs=0, seed=seed,
                                         ignore_eos=sampling.ignore_eos, stop=list(getattr(env, "stop", ())),
                                         include_stop_str_in_output=True, flat_logprobs=True,
                                         detokenize=bool(getattr(env, "stop", ())))  # (the turn is decoded below)

    def observation_ids(self, problem: Problem, observation, role: str, after_eos: bool) -> list[int]:
        """The environment's answer as token ids (``episodes.observation_ids``), remembered: environments repeat
        themselves ("higher", a tool's error), and a turn's batch asks for many."""
        key = (observation if isinstance(observation, str) else repr(observation), role, after_eos,
               "messages" in problem.meta)
        if key not in self._observations:
            if len(self._observations) > 4096:
                self._observations.clear()
            self._observations[key] = episodes.observation_ids(self.tokenizer, self.chat_delta(problem),
                                                               observation, role, after_eos)
        return self._observations[key]

    def chat_delta(self, problem: Problem):
        """The renderer of environment messages in the chat template (None: plain prompts, text appended)."""
        if "messages" not in problem.meta:
            return None
        if self._delta is None:
            self._delta = episodes.ChatDelta(self.tokenizer)
        return self._delta

    @staticmethod
    def logprobs_of(output, ids: list[int]) -> list[float]:
        flat = getattr(output.logprobs, "logprobs", None)  # FlatLogprobs: one entry per position (logprobs=0)
        if flat is not None and len(flat) == len(ids):
            return list(flat)
        return [step[tok].logprob for step, tok in zip(output.logprobs, ids)]

    def _prompt_ids(self, problem: Problem) -> list[int]:
        return prompt_ids(self.tokenizer, problem)

    def _completion(self, problem: Problem, prompt_ids, output) -> Completion:
        ids = list(output.token_ids)
        logprobs = self.logprobs_of(output, ids)
        return Completion(problem_id=problem.id, prompt_ids=list(prompt_ids), completion_ids=ids,
                          logprobs=logprobs, finish_reason=output.finish_reason or "length",
                          policy_version=self.version, text=self.tokenizer.decode(ids, skip_special_tokens=True))

    def load_weights(self, update: WeightUpdate) -> float:
        """Serve ``update`` (full weights or an adapter version) without a restart; returns seconds spent."""
        start = time.perf_counter()
        if update.kind not in self._loaders:
            raise ValueError(f"unknown weight update kind {update.kind!r}")
        self.restarted = False
        if 0 < self.version >= update.version:  # a push overtaken by a newer one (a revived worker's)
            return 0.0
        self._loaders[update.kind](update)
        self.llm.reset_prefix_cache()
        self.version = update.version
        return time.perf_counter() - start

    def _load_full(self, update: WeightUpdate) -> None:
        if self.adapters is not None:
            raise ValueError("this engine serves a LoRA policy: push adapters, not full weights")
        worker = self.llm.llm_engine.model_executor.driver_worker.worker
        # The CPU backend repacks parameters, so model.load_weights fails after start-up; reload_weights takes
        # Hugging Face names and handles the fused q/k/v and gate/up projections.
        worker.reload_weights(weights_iterator=iter(update.payload), is_checkpoint_format=True)

    def _load_adapter(self, update: WeightUpdate) -> None:
        if self.adapters is None:
            raise ValueError("this engine was started without LoRA (lora_rank): it cannot serve an adapter")
        self.adapters.push(update.version, update.payload["config"], update.payload["tensors"])

    def sequence_logprobs(self, prompt_ids: list[int], completion_ids: list[int]) -> list[float]:
        """log p(completion token | prefix) under the served weights (for checking weight sync)."""
        params = self._vllm.SamplingParams(max_tokens=1, prompt_logprobs=0, temperature=1.0)
        out = self.llm.generate([{"prompt_token_ids": prompt_ids + completion_ids}], params, use_tqdm=False,
                                lora_request=self._lora_request)[0]
        steps = out.prompt_logprobs[len(prompt_ids):]
        return [step[tok].logprob for step, tok in zip(steps, completion_ids)]

    def reseed(self, seed: int) -> None:
        """Seed the sampling of the next requests that carry no seed of their own (vLLM's sampler draws them from
        torch's generator in this process)."""
        import torch

        torch.manual_seed(seed)

    def get_version(self) -> int:
        return self.version

    def pid(self) -> int:
        return os.getpid()

    def threads(self) -> int:
        """Threads this engine's kernels run on."""
        import torch

        return torch.get_num_threads()

    def resume_serving(self) -> None:
        """A restarted engine serves what it was started with (an evaluation: no learner pushes weights)."""
        self.restarted = False

    def close(self) -> None:
        """Release what lives outside the process (the adapter versions on tmpfs, the agents' endpoint)."""
        if self.adapters is not None:
            self.adapters.close()
        if getattr(self, "_endpoint", None) is not None:
            self._endpoint.shutdown()
            self._agents.shutdown()
            self._endpoint = None
