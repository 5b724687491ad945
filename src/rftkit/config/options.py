"""The `rftkit:` block: everything OpenAI's job body does not expose, each section with its
defaults and their meaning."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, model_validator

from rftkit.config.sections import AutoFloat, Section


class LoraOptions(Section):
    enabled: bool = Field(False, description="Train a LoRA adapter instead of every weight.")
    r: int = Field(16, ge=1, description="Adapter rank.")
    alpha: int = Field(32, ge=1, description="Scaling numerator: updates are scaled by alpha / r.")
    dropout: float = Field(0.0, ge=0, lt=1, description="Dropout on the adapter's input.")
    target_modules: list[str] | Literal["all-linear"] = Field(
        "all-linear", description='Module names to adapt, or "all-linear" (every linear but the output).'
    )


class KLOptions(Section):
    coef: float = Field(0.0, ge=0, description="beta: weight of the KL penalty to the reference model.")
    estimator: Literal["k1", "k2", "k3"] = Field(
        "k3", description="KL estimator (Schulman, 'Approximating KL divergence', 2020)."
    )
    placement: Literal["loss", "reward"] = Field(
        "loss", description="loss: add beta*KL to the loss (GRPO); reward: subtract it from the reward (PPO)."
    )
    measure: Literal["auto", "always", "off"] = Field(
        "auto", description="KL to the start logged as `kl` for monitoring even when coef is 0. auto: under LoRA "
        "(the base with the adapter off, no copy) or when coef > 0; always: also a full fine-tune, which then "
        "holds a frozen copy of the starting model (its memory again); off: only when coef > 0."
    )


class Lengths(Section):
    max_prompt_tokens: int = Field(
        512, ge=1, description="Longest prompt, in tokens; longer rows are reported by data validation."
    )
    max_completion_tokens: int = Field(256, ge=1, description="Most tokens sampled per completion.")


class Sampling(Section):
    temperature: float = Field(1.0, ge=0, description="Sampling temperature for training rollouts; 0 is greedy.")
    top_p: float = Field(1.0, gt=0, le=1, description="Nucleus sampling mass.")
    top_k: int = Field(0, ge=0, description="Keep only the k most likely tokens; 0 keeps all.")


class Optimizer(Section):
    weight_decay: float = Field(0.0, ge=0, description="AdamW weight decay.")
    betas: tuple[float, float] = Field((0.9, 0.999), description="AdamW betas.")
    max_grad_norm: float = Field(1.0, gt=0, description="Gradient clipping by global norm.")
    warmup_steps: int = Field(0, ge=0, description="Linear warmup steps.")
    schedule: Literal["constant", "cosine", "linear"] = Field(
        "constant", description="Learning-rate schedule after warmup."
    )


Algorithm = Literal["grpo", "dr_grpo", "dapo", "gspo", "rloo", "reinforce_pp", "ppo"]

# What each algorithm means, as defaults for the `rftkit.loss` and `rftkit.dynamic_sampling`
# keys that are left unset (null). Explicit values always win.
ALGORITHM_PRESETS: dict[str, dict[str, Any]] = {
    # DeepSeekMath (Shao et al., 2024): group-normalised advantages, mean over each sequence.
    "grpo": {"advantage": "grpo", "policy_loss": "ppo_clip", "aggregation": "sequence_mean",
             "clip_low": 0.2, "clip_high": 0.2, "dynamic_sampling": False},
    # Liu et al., 2025: no std division, a constant divisor instead of each sequence's length.
    "dr_grpo": {"advantage": "dr_grpo", "policy_loss": "ppo_clip", "aggregation": "constant",
                "clip_low": 0.2, "clip_high": 0.2, "dynamic_sampling": False},
    # Yu et al., 2025: clip-higher, token-level mean, drop groups that carry no signal.
    "dapo": {"advantage": "grpo", "policy_loss": "ppo_clip", "aggregation": "token_mean",
             "clip_low": 0.2, "clip_high": 0.28, "dynamic_sampling": True},
    # Zheng et al., 2025: one importance ratio per sequence, with a much tighter clip.
    "gspo": {"advantage": "grpo", "policy_loss": "gspo", "aggregation": "sequence_mean",
             "clip_low": 3e-4, "clip_high": 4e-4, "dynamic_sampling": False},
    "rloo": {"advantage": "rloo", "policy_loss": "ppo_clip", "aggregation": "token_mean",
             "clip_low": 0.2, "clip_high": 0.2, "dynamic_sampling": False},
    "reinforce_pp": {"advantage": "reinforce_pp", "policy_loss": "ppo_clip", "aggregation": "token_mean",
                     "clip_low": 0.2, "clip_high": 0.2, "dynamic_sampling": False},
    # Schulman et al., 2017: a critic, GAE, several epochs per batch.
    "ppo": {"advantage": "gae", "policy_loss": "ppo_clip", "aggregation": "token_mean",
            "clip_low": 0.2, "clip_high": 0.2, "dynamic_sampling": False},
}


class LossOptions(Section):
    advantage: Literal["grpo", "dr_grpo", "rloo", "reinforce_pp", "gae"] | None = Field(
        None, description="Advantage estimator; null: the algorithm's (see ALGORITHM_PRESETS in "
        "rftkit/config/options.py)."
    )
    policy_loss: Literal["ppo_clip", "gspo"] | None = Field(
        None, description="ppo_clip: token-level ratio; gspo: one ratio per sequence. null: the algorithm's."
    )
    aggregation: Literal["token_mean", "sequence_mean", "constant"] | None = Field(
        None, description="How token losses become one number. null: the algorithm's."
    )
    clip_low: float | None = Field(None, ge=0, description="Ratio lower bound is 1 - clip_low. null: the algorithm's.")
    clip_high: float | None = Field(None, ge=0, description="Ratio upper bound is 1 + clip_high. null: the algorithm's.")
    entropy_coef: float = Field(0.0, ge=0, description="Weight of an entropy bonus (0: none).")


class DynamicSampling(Section):
    enabled: bool | None = Field(
        None, description="Drop groups whose rewards are all equal (no signal). null: the algorithm's (on for dapo)."
    )
    max_rounds: int = Field(
        1, ge=1, description="Sampling rounds per step to refill dropped groups (1: no oversampling)."
    )


class UpdateOptions(Section):
    epochs: int = Field(
        1, ge=1, description="Passes over each sampled batch. 1 with mini_batches 1 is fully on-policy."
    )
    mini_batches: int = Field(1, ge=1, description="Optimizer steps per pass over a sampled batch.")
    micro_batch_tokens: int = Field(
        16384, ge=1, description="Most (rows x padded length) tokens per forward pass; gradients accumulate."
    )


class PPOOptions(Section):
    epochs: int = Field(4, ge=1, description="Passes over each batch (ppo only; overrides update.epochs).")
    gamma: float = Field(1.0, ge=0, le=1, description="Discount.")
    lam: float = Field(0.95, ge=0, le=1, description="GAE lambda.")
    value_clip: float = Field(0.2, ge=0, description="Clip of the value update around the old values.")
    value_coef: float = Field(0.5, ge=0, description="Weight of the value loss.")
    critic_learning_rate_multiplier: float = Field(
        5.0, gt=0, description="The critic's learning rate is the policy's times this."
    )


class EvalOptions(Section):
    baseline: bool = Field(True, description="Evaluate the model on the validation set before training.")
    k: int = Field(8, ge=1, description="Samples per validation prompt for pass@k at baseline and at the end.")
    pass_threshold: float | None = Field(
        None,
        description="A sample counts as correct (for pass@k) when its reward is at least this. null: the "
        "grader's own pass_threshold (text_similarity has one), else 1.0. See docs/evaluation.md.",
    )
    max_prompts: int | None = Field(
        None, ge=1, description="Evaluate on at most this many validation prompts (the first ones). null: all."
    )


class CheckpointOptions(Section):
    interval: int | None = Field(None, ge=1, description="Steps between checkpoints. null: every eval_interval.")
    keep_last: int = Field(1, ge=1, description="Most recent checkpoints kept.")
    keep_best: int = Field(
        1, ge=0, description="Checkpoints kept for the best validation reward (scored only at steps that ran a "
        "validation; a step that sets a new best is always checkpointed)."
    )
    export: Literal["last", "best"] = Field(
        "last", description="The final model: last, the policy after the last step; best, the checkpoint with "
        "the best validation reward (final evaluation and model/ then use it; needs keep_best >= 1)."
    )

    @model_validator(mode="after")
    def _best_is_kept(self) -> "CheckpointOptions":
        if self.export == "best" and self.keep_best < 1:
            raise ValueError("checkpoints.export: best needs checkpoints.keep_best >= 1 (set keep_best: 1)")
        return self


class MonitorOptions(Section):
    length_correlation: float = Field(
        0.5, ge=0, le=1, description="Warn when |corr(reward, completion length)| in a step exceeds this."
    )
    length_correlation_repeat: float = Field(
        0.1, ge=0, le=1, description="After a length-correlation warning, warn again only when |corr| exceeds "
        "the last warned value by this much (a steady correlation is reported once)."
    )
    kl_jump: float = Field(5.0, gt=1, description="Warn when KL exceeds this multiple of its running median.")
    valid_drop_evals: int = Field(
        3, ge=1, description="Validation trend window: the mean of the last this many validation rewards is "
        "compared with the best reward before them."
    )
    valid_drop_margin: float = Field(
        0.15, gt=0, lt=1, description="Warn when that mean is more than this fraction below the earlier best "
        "while train reward rose (again only after a new best)."
    )
    grader_error_rate: float = Field(
        0.5, ge=0, le=1, description="Warn when more than this share of a step's grades are grader errors "
        "(a judge or endpoint that is down scores every sample 0); once per outage."
    )
    auto_pause_kl: float | None = Field(None, gt=0, description="Stop with a checkpoint when KL exceeds this.")
    auto_pause_on_warning: bool = Field(
        False, description="Stop with a checkpoint on any monitor warning (validation drop, length correlation, "
        "KL jump, grader errors)."
    )
    samples_per_step: int = Field(4, ge=0, description="Groups per step written to samples.jsonl.")
    sinks: list[Literal["tensorboard", "wandb", "mlflow", "trackio"]] = Field(
        [], description="Extra metrics sinks besides metrics.jsonl (each needs its package installed)."
    )


class EngineOptions(Section):
    base_url: str | None = Field(
        None, description="openai: the server's OpenAI-compatible base URL, e.g. http://127.0.0.1:8000/v1 "
        "(`vllm serve`, SGLang, `rftkit serve`).")
    model: str | None = Field(
        None, description="openai: the served model's name in requests. null: the job's model.")
    api_key_env: str | None = Field(
        None, description="openai: the environment variable holding the server's API key (sent as a "
        "Bearer token; the key itself stays out of the job spec). null: no key.")
    timeout_s: float = Field(120.0, gt=0, description="openai: seconds one request may take.")
    max_retries: int = Field(
        4, ge=0, description="openai: retries of a failed request (connection error, timeout, 429, 5xx), "
        "with exponential backoff; then the job stops with a checkpoint it can resume from.")
    backoff_s: float = Field(1.0, ge=0, description="openai: wait before the first retry; doubled for each next one.")
    prompts_per_request: int = Field(
        64, ge=1, description="openai: most prompts sent in one /completions request (each sampled n times).")
    weight_sync: Literal["load_lora_adapter", "update_weights_from_disk", "none"] = Field(
        "load_lora_adapter", description="openai: how the server gets the trainer's weights before sampling. "
        "load_lora_adapter: vLLM's route (a LoRA adapter; `rftkit serve` also takes a full model "
        "directory); update_weights_from_disk: SGLang's route (full weights); none: never pushed.")
    weights_dir: str | None = Field(
        None, description="openai: where weights are written for the server to read (it must see the "
        "same path). null: engine-weights/ in the run directory.")
    gpu_memory_utilization: float = Field(
        0.3, gt=0, le=1, description="vllm: share of GPU memory vLLM may take (the trainer shares the GPU).")
    max_model_len: int | None = Field(
        None, ge=1, description="vllm: longest sequence. null: the prompt limit plus the completion limit "
        "(an episode's environment.max_tokens); vLLM's own when that is unbounded.")
    sleep: bool = Field(
        True, description="vllm: sleep mode between rollouts, so that training gets the GPU memory back.")


class RolloutCorrection(Section):
    mode: Literal["auto", "off", "token", "sequence"] = Field(
        "auto", description="Truncated importance sampling for samples whose engine log-probs are not the "
        "trainer's: the trainer recomputes the old log-probs and weights each token's loss by "
        "min(pi_old / pi_sampler, cap). token: a ratio per token; sequence: one per sequence (the product). "
        "auto: token for engines with their own numerics (vllm, openai), off for hf and lean.")
    cap: float = Field(2.0, ge=1, description="The largest importance weight (TIS's C).")


class AsynchronousOptions(Section):
    max_staleness: int = Field(
        0, ge=0, le=1, description="Asynchronous rollouts (docs/scale.md). 0: each step samples with the current "
        "weights, then trains. 1: one step off-policy: step t+1's samples are drawn, with a copy of the weights "
        "step t starts from, while step t trains, so generation and training overlap; the samples are "
        "importance-corrected like an external engine's (rollout_correction, token level under auto). "
        "Samples older than this many optimizer steps are dropped. An in-process engine (auto, hf, lean) samples "
        "with a copy of the policy; one that samples elsewhere (--ray's actors, openai, vllm) samples the next "
        "batch itself. The block may also be written rftkit.async.")


STOP_REASON_NAMES = Literal["completed", "max_tokens", "max_turns", "parse_error", "tool_error", "timeout"]


class EnvironmentOptions(Section):
    factory: str | None = Field(
        None, description='Multi-turn, tool-using episodes (docs/environments.md): the environment class, as '
        '"path/to/env.py:ClassName" (relative to the job file, or absolute) or "package.module:ClassName". '
        "TRL's environment_factory contract: a no-argument constructor, reset(**row) -> str | None, typed "
        "and documented public methods as tools, an optional reward(). null: single-turn.")
    max_turns: int = Field(4, ge=1, description="Most model turns in an episode; then it stops as max_turns.")
    max_tokens: int | None = Field(
        None, ge=1, description="Most completion tokens in an episode (model turns and tool results); then it "
        "stops as max_tokens. null: the model's context length minus the prompt.")
    tool_timeout_s: float = Field(10.0, gt=0, description="Seconds one tool call may run; then the episode "
                                  "stops as timeout.")
    max_tool_calls: int = Field(8, ge=1, description="Most tool calls in an episode; then it stops as max_turns.")
    on_tool_error: Literal["continue", "end"] = Field(
        "continue", description="A tool that raises. continue: the error is its result and the model goes on; "
        "end: the episode stops as tool_error.")
    on_parse_error: Literal["end", "continue"] = Field(
        "end", description="A turn whose tool call cannot be read (broken JSON, an unknown tool). end: the "
        "episode stops as parse_error; continue: the error is said back to the model as a user turn.")
    tool_parser: Literal["auto", "hermes"] = Field(
        "auto", description='How tool calls are read from a turn. hermes: <tool_call>{"name": ..., "arguments": '
        "{...}}</tool_call> (rftkit's templates, Qwen 2.5/3, Hermes). auto: hermes.")
    stop_rewards: dict[STOP_REASON_NAMES, float] = Field(
        default_factory=lambda: {"parse_error": 0.0},
        description="The reward of an episode that stopped for this reason, whatever the grader says "
        "(other reasons are graded).")
    masked_stop_reasons: list[STOP_REASON_NAMES] = Field(
        default_factory=lambda: ["timeout"],
        description="Episodes that stopped for these reasons are left out of the loss (they still count in "
        "their group's baseline): a slow tool is not the model's fault.")


class FSDPOptions(Section):
    enabled: bool = Field(
        False, description="Data-parallel ranks (--nproc, torchrun, --ray --nproc) shard the policy's training "
        "state with FSDP2 (torch's fully_shard): each rank holds 1/N of the trained weights, their gradients and "
        "the optimizer's state, and a whole copy of the weights for sampling, log-probs and checkpoints "
        "(docs/scale.md). For models whose training state does not fit one device; off, every rank holds all "
        "of it. Ignored in a single process. Full fine-tuning only (not LoRA).")
    mixed_precision: Literal["auto", "no", "bf16"] = Field(
        "auto", description="auto: bf16 when the whole model holds weights narrower than fp32 (rftkit.precision "
        "bf16, or a bf16 checkpoint on a GPU) and rftkit.precision is not bf16-pure, else no. bf16: the sharded "
        "replica keeps fp32 master weights and optimizer state, gathers its weights as bf16 for the forward and "
        "backward passes and reduces gradients in fp32 (FSDP2's MixedPrecisionPolicy), so that small updates are "
        "not lost to bf16 rounding. The whole copy for sampling keeps the model's dtype; when that is narrower "
        "than fp32, checkpoints also hold the fp32 master weights and resume from them. no: the replica computes "
        "and stores in the model's own dtype. Meant for GPUs (on most CPUs bf16 is slower than fp32).")


class RayOptions(Section):
    rollout_actors: int = Field(
        2, ge=1, description="`rftkit train --ray`: rollout actors, each an in-process engine (rftkit.engine: "
        "auto, hf or lean) over its own copy of the policy; a step's prompts are split between them.")
    grader_actors: int = Field(
        1, ge=1, description="`--ray`: grader actors; a step's samples are split between them.")
    cpus_per_actor: float = Field(
        1.0, gt=0, description="`--ray`: CPUs reserved for each actor in the placement group (it also runs "
        "that many torch threads, at least one).")
    call_timeout_s: float = Field(
        600.0, gt=0, description="`--ray`: seconds one remote call (sampling a share, grading a share, loading "
        "weights) may take; then the actor counts as dead.")
    restarts: int = Field(
        1, ge=0, description="`--ray`: how often a call is retried on a restarted actor after its actor died or "
        "timed out; then the job stops with a checkpoint to --resume from.")
    placement_timeout_s: float = Field(
        120.0, gt=0, description="`--ray`: seconds to wait for the cluster to place every actor; then the job "
        "fails naming the resources it waited for.")


class RftkitOptions(Section):
    algorithm: Algorithm = Field("grpo", description="The RL algorithm (reinforcement jobs).")
    group_size: int = Field(8, ge=2, description="Completions sampled per prompt (G).")
    learning_rate: AutoFloat = Field(
        "auto", description="Base learning rate; the effective rate is this x learning_rate_multiplier. auto: "
        "from the model's parameter count N, LoRA or not, and the method (docs/auto.md): reinforcement 3e-5 x "
        "(1.1M / N)^0.45 within [1e-6, 3e-5], supervised 10x that within [1e-5, 3e-4]; x10 under LoRA."
    )
    auto_steps: int = Field(
        100, ge=1, description='Steps an "auto" n_epochs aims for on small datasets.'
    )
    max_steps: int | None = Field(None, ge=1, description="Stop after this many steps, whatever n_epochs says.")
    lora: LoraOptions = LoraOptions()
    kl: KLOptions = KLOptions()
    loss: LossOptions = LossOptions()
    dynamic_sampling: DynamicSampling = DynamicSampling()
    update: UpdateOptions = UpdateOptions()
    ppo: PPOOptions = PPOOptions()
    lengths: Lengths = Lengths()
    sampling: Sampling = Sampling()
    optimizer: Optimizer = Optimizer()
    eval: EvalOptions = EvalOptions()
    checkpoints: CheckpointOptions = CheckpointOptions()
    monitor: MonitorOptions = MonitorOptions()
    engine: Literal["auto", "hf", "lean", "vllm", "openai"] = Field(
        "auto", description="Rollout engine (docs/engines.md). hf: the policy's own forward with a KV cache; "
        "lean: rftkit's lean Llama forward (CPU, same tokens as hf); vllm: an in-process vLLM (GPU, "
        "`pip install rftkit[vllm]`); openai: any OpenAI-compatible server (engine_options.base_url). "
        "auto: lean for Llama-family models up to 50M parameters on CPU, hf otherwise.")
    engine_options: EngineOptions = EngineOptions()
    rollout_correction: RolloutCorrection = RolloutCorrection()
    asynchronous: AsynchronousOptions = AsynchronousOptions()
    environment: EnvironmentOptions = EnvironmentOptions()
    ray: RayOptions = RayOptions()
    fsdp: FSDPOptions = FSDPOptions()
    device: Literal["auto", "cpu", "cuda"] = Field("auto", description="auto: cuda when available, else cpu.")
    precision: Literal["auto", "fp32", "bf16", "bf16-pure"] = Field(
        "auto", description="The policy's (and critic's) number format in training (docs/precision.md). fp32: "
        "weights, arithmetic, gradients and optimizer state in fp32. bf16: the model is held in bf16 (sampling, "
        "log-probs, forward and backward passes), and the optimizer steps fp32 master copies of its trained "
        "weights (gradients summed in fp32, AdamW state in fp32), rounded into the model after each step, so "
        "that updates smaller than bf16's resolution are kept; checkpoints carry the masters (18 bytes a trained "
        "parameter). bf16-pure: weights, gradients and optimizer state all bf16 (8 bytes a trained parameter; "
        "updates below 1/256 of a weight are lost; a LoRA adapter stays fp32 either way). auto: fp32 on CPU "
        "(bf16 is several times slower there); on a GPU the checkpoint's own dtype (fp16 read as bf16), with "
        "fp32 masters when it is narrower than fp32.")
    eval_batch_size: int = Field(64, ge=1, description="Prompts generated together during evaluation.")

    @model_validator(mode="before")
    @classmethod
    def _async_spelled_out(cls, data: Any) -> Any:
        """`async:` (the word jobs are written with; a keyword in Python) is `asynchronous:`."""
        if not isinstance(data, dict) or "async" not in data:
            return data
        if "asynchronous" in data:
            raise ValueError("rftkit.async and rftkit.asynchronous are the same setting: give one of them")
        return {("asynchronous" if key == "async" else key): value for key, value in data.items()}

    @model_validator(mode="after")
    def _one_precision(self) -> "RftkitOptions":
        mixed = self.fsdp.mixed_precision
        if self.fsdp.enabled and (self.precision, mixed) in (("bf16", "no"), ("bf16-pure", "bf16")):
            kept = "keeps fp32 master weights" if self.precision == "bf16" else "keeps none"
            raise ValueError(f"rftkit.precision: {self.precision} {kept}, and rftkit.fsdp.mixed_precision: {mixed} "
                             "says otherwise for the sharded replica (leave fsdp.mixed_precision at auto: it "
                             "follows precision)")
        return self
