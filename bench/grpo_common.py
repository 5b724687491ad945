"""What both sides of the GRPO benchmark share: settings, the prepared model and data, the
held-out evaluation of weight snapshots, and the machine's measured matmul peak.

Only the training loop differs between the sides. Everything that decides *what* is trained
(weights, tokenizer, prompts, reward, hyperparameters) and how the result is *measured*
(held-out reward of each snapshot, scored by one evaluator) lives here, once.
"""

from __future__ import annotations

import json
import os
import resource
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

PRESETS = {"S": "tiny", "M": "small"}  # ~1.1M and ~6.0M parameters
HELD_OUT_PROMPTS = 128
HELD_OUT_SAMPLES = 4
# Full fine-tuning rates per preset (at 3e-4 the M model's held-out reward falls on both sides),
# and the LoRA rate: an adapter needs a larger step.
LEARNING_RATES = {"S": 3e-4, "M": 1e-4}
LORA_LEARNING_RATE = 2e-3


def learning_rate(preset: str, lora: bool) -> float:
    return LORA_LEARNING_RATE if lora else LEARNING_RATES[preset]


@dataclass(frozen=True)
class Settings:
    """One benchmark cell. Every field is applied identically on both sides."""

    preset: str = "S"
    lora: bool = False
    beta: float = 0.0
    steps: int = 40
    prompts_per_step: int = 16
    group_size: int = 8
    max_completion_tokens: int = 24
    learning_rate: float = 3e-4
    clip_epsilon: float = 0.2
    max_grad_norm: float = 1.0
    lora_r: int = 16
    lora_alpha: int = 32
    snapshot_every: int = 10
    seed: int = 0
    threads: int = field(default_factory=lambda: os.cpu_count() or 1)
    nproc: int = 1  # data-parallel processes: rftkit's ranks, or TRL's under accelerate launch (threads shared out)
    max_staleness: int = 0  # rftkit's asynchronous rollouts (1: one step off-policy); TRL: 0

    @property
    def threads_per_process(self) -> int:
        return max(1, self.threads // self.nproc)

    @property
    def size(self) -> str:
        return PRESETS[self.preset]

    @property
    def completions_per_step(self) -> int:
        return self.prompts_per_step * self.group_size

    @property
    def label(self) -> str:
        return f"{self.preset} {'LoRA' if self.lora else 'full'} beta={self.beta:g}"

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> "Settings":
        return cls(**json.loads(text))


def setup_process(settings: Settings) -> None:
    """The same CPU setup in every side's process: denormals flushed, fp32, equal threads."""
    torch.set_flush_denormal(True)
    torch.set_num_threads(settings.threads_per_process)
    torch.manual_seed(settings.seed)


def peak_rss_mb() -> float:
    """This process's peak resident set. VmHWM, not getrusage's ru_maxrss: a child started by
    fork + exec inherits its parent's ru_maxrss, so a big parent would inflate every side."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024  # kB
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


# ---------------------------------------------------------------------------- preparation


def prepare(work: Path, preset: str, seed: int = 0, log=print) -> dict:
    """Data and a warm-started base model for a preset, built once and cached under `work`.

    The base is rftkit's tiny Llama warm-started by SFT (as `rftkit demo` does) until it
    solves about a quarter of training prompts: real but imperfect skill, so that reward can
    rise during the benchmark's steps.
    """
    from rftkit.cli.model import warm_start
    from rftkit.cli.train import competence_check
    from rftkit.data.builtin import write_addition
    from rftkit.models.load import save_policy
    from rftkit.models.tiny import build_tiny

    data = work / f"data-seed{seed}"
    model_dir = work / f"base-{preset}-seed{seed}"
    if not (data / "valid.jsonl").exists():
        write_addition(data, seed=seed)
    if not (model_dir / "ready").exists():
        log(f"preparing the {preset} base model (SFT warm start, once; cached in {model_dir})")
        torch.set_flush_denormal(True)
        model, tokenizer = build_tiny(PRESETS[preset], seed)
        check = competence_check(model, tokenizer, data / "train.jsonl", 0.25)
        warm_start(model, tokenizer, data / "sft.jsonl", None, steps=1500, lr=3e-3 if preset == "S" else 1e-3,
                   batch_size=32, seed=seed, should_stop=check)
        save_policy(model, tokenizer, model_dir)
        (model_dir / "ready").touch()
    return {"model": str(model_dir.resolve()), "data": str(data.resolve())}


# ---------------------------------------------------------------------------- measurement


def merged_state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The policy's weights as a plain causal LM's state dict (a LoRA adapter merged in), so
    snapshots from either side load into the same base model for evaluation."""
    import copy

    if hasattr(model, "merge_and_unload"):
        model = copy.deepcopy(model).merge_and_unload()
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


class SnapshotClock:
    """Training wall-clock that stops while a snapshot is being written."""

    def __init__(self, out: Path, every: int):
        self.out, self.every = out, every
        self.started = time.perf_counter()
        self.paused = 0.0
        self.snapshots: list[dict] = []

    def elapsed(self) -> float:
        return time.perf_counter() - self.started - self.paused

    def maybe_snapshot(self, step: int, model: torch.nn.Module) -> None:
        if step % self.every:
            return
        train_seconds = self.elapsed()
        begin = time.perf_counter()
        path = self.out / f"snapshot-{step}.pt"
        torch.save(merged_state(model), path)
        self.snapshots.append({"step": step, "train_seconds": train_seconds, "path": str(path)})
        self.paused += time.perf_counter() - begin


def held_out_curve(prepared: dict, snapshots: list[dict], seed: int) -> list[dict]:
    """Held-out mean reward (k samples per prompt, temperature 1) of each snapshot, scored by
    one evaluator for both sides."""
    from rftkit.data.builtin import ADDITION_GRADER
    from rftkit.data.validate import load_examples
    from rftkit.eval.passk import evaluate
    from rftkit.graders import build_grader
    from rftkit.models.load import load_policy
    from rftkit.rollout import local_engine
    from rftkit.types import SamplingParams

    model, tokenizer = load_policy(prepared["model"], "cpu")
    engine = local_engine(model, tokenizer)
    examples = load_examples(Path(prepared["data"]) / "valid.jsonl", "reinforcement")[:HELD_OUT_PROMPTS]
    grader = build_grader(ADDITION_GRADER)
    curve = []
    for snap in snapshots:
        model.load_state_dict(torch.load(snap["path"]))
        result = evaluate(engine, tokenizer, grader, examples, k=HELD_OUT_SAMPLES, params=SamplingParams(24, 1.0),
                          batch_prompts=HELD_OUT_PROMPTS, seed=seed, greedy=False)
        curve.append({"step": snap["step"], "train_seconds": snap["train_seconds"], "reward": result.reward_mean})
    return curve


def matmul_gflops(threads: int, size: int = 512, seconds: float = 1.0) -> float:
    """Measured fp32 matmul GFLOP/s on this machine with `threads` threads: the practical
    ceiling that training FLOP utilisation is reported against."""
    torch.set_num_threads(threads)
    a, b = torch.randn(size, size), torch.randn(size, size)
    for _ in range(3):
        a @ b
    count, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        a @ b
        count += 1
    return 2 * size**3 * count / (time.perf_counter() - start) / 1e9
