"""`rftkit eval`, `rftkit export` and `rftkit report`: use and share what training made."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Optional

import typer

from rftkit.cli.common import out, read_json
from rftkit.errors import RftkitError


def evaluate(
    model: str = typer.Option(..., help="Model directory (a run's model/, a checkpoint, or any HF model)."),
    data: Path = typer.Option(..., help="Prompts in RFT format (last turn from the user)."),
    grader: Optional[Path] = typer.Option(None, help="Grader spec (JSON). Optional with an --environment whose "
                                                     "reward() gives the reward."),
    environment: Optional[str] = typer.Option(
        None, help="Run multi-turn episodes with this environment (docs/environments.md): FILE.py:Class "
                   "(relative to the working directory) or package.module:Class."),
    max_turns: int = typer.Option(4, min=1, help="With --environment: most model turns per episode."),
    k: int = typer.Option(8, "-k", "--k", min=1, help="Samples per prompt for pass@k."),
    max_tokens: int = typer.Option(256, help="Most tokens per completion."),
    temperature: float = typer.Option(1.0, min=0.0, help="Sampling temperature (0: greedy, then k is 1)."),
    threshold: float = typer.Option(1.0, help="A sample is correct when its reward is at least this."),
    limit: Optional[int] = typer.Option(None, min=1, help="Evaluate only the first N prompts."),
    seed: int = typer.Option(0, help="Sampling seed."),
    output: Optional[Path] = typer.Option(None, "--output", help="Also write the figures as JSON here."),
    engine: str = typer.Option("auto", help="Rollout engine: auto, hf, lean, vllm, or openai (a served model; "
                                            "--base-url). Training jobs use the same engines."),
    base_url: Optional[str] = typer.Option(None, help="openai engine: the server's base URL, e.g. http://127.0.0.1:8000/v1."),
    served_model: Optional[str] = typer.Option(None, help="openai engine: the model's name on the server "
                                                          "(default: --model). Its weights are used as served."),
    api_key_env: Optional[str] = typer.Option(None, help="openai engine: environment variable with the server's key."),
) -> None:
    """pass@1, pass@k and mean reward of a model on a dataset, scored by a grader (or, with
    --environment, of multi-turn episodes, scored by the grader or the environment's reward)."""
    from rftkit.config import EngineOptions
    from rftkit.data.validate import load_examples
    from rftkit.eval.passk import evaluate as run_eval
    from rftkit.graders import GraderContext
    from rftkit.graders.templates import item_fields
    from rftkit.models.load import load_policy
    from rftkit.rollout.engine import EngineContext, build_engine
    from rftkit.types import SamplingParams

    from rftkit.config import EnvironmentOptions
    from rftkit.train.job_rollout import rollout_for

    spec = read_json(grader, "grader") if grader is not None else None
    rollout = rollout_for(spec, EnvironmentOptions(factory=environment, max_turns=max_turns), Path.cwd())
    examples = load_examples(data, "reinforcement", required_fields=item_fields(rollout.grader_spec))[:limit]
    policy, tokenizer = load_policy(model)
    k = 1 if temperature == 0 else k
    options = EngineOptions(base_url=base_url, model=served_model, api_key_env=api_key_env, weight_sync="none")
    base_dir = grader.resolve().parent if grader is not None else Path.cwd()
    with rollout.grader(GraderContext(base_dir=base_dir), source=str(grader or "environment")) as scorer, \
            build_engine(engine, EngineContext(policy, tokenizer, model, options)) as sampler:
        sampler.update_weights(policy, 0)
        result = run_eval(sampler, tokenizer, scorer, examples, k=k, params=SamplingParams(max_tokens, temperature),
                          threshold=threshold, seed=seed, greedy=temperature > 0, sampler=rollout.sampler)
    figures = result.summary()
    greedy = f", greedy {figures['greedy_pass']:.1%}" if figures["greedy_pass"] is not None else ""
    out.print(f"{len(examples)} prompts: pass@1 {figures['pass_at_1']:.1%}, pass@{k} {figures['pass_at_k']:.1%}, "
              f"mean reward {figures['reward_mean']:.3f}{greedy}")
    print(json.dumps(figures))
    if output is not None:
        output.write_text(json.dumps(figures, indent=1) + "\n")


def _model_source(path: Path) -> Path:
    for candidate in (path / "model", path):
        if (candidate / "config.json").exists() or (candidate / "adapter_config.json").exists():
            return candidate
    raise RftkitError(f"{path}: no model here", fix="pass a run directory, a checkpoint-N directory or a model directory")


def export(
    source: Path = typer.Argument(..., help="A run directory, a checkpoint-N directory, or a model directory."),
    out_dir: Path = typer.Option(..., "--out", help="Where to write the Hugging Face directory."),
    merge: bool = typer.Option(False, help="Merge a LoRA adapter into its base and write full weights."),
    overwrite: bool = typer.Option(False, help="Write into a directory that already holds files."),
) -> None:
    """Write a Hugging Face directory that loads offline: full weights, or a PEFT adapter plus its base reference."""
    from rftkit.models.load import load_policy, save_policy
    from rftkit.train.supervised import prepare_out_dir

    model_dir = _model_source(source)
    prepare_out_dir(out_dir, overwrite)
    adapter = (model_dir / "adapter_config.json").exists()
    if adapter and not merge:
        base = json.loads((model_dir / "adapter_config.json").read_text()).get("base_model_name_or_path")
        shutil.copytree(model_dir, out_dir, dirs_exist_ok=True)
        out.print(f"adapter written to {out_dir}; base model: {base} (load with peft, or export again with --merge)")
        return
    model, tokenizer = load_policy(str(model_dir), "cpu")  # merges an adapter into its base
    save_policy(model, tokenizer, out_dir)
    kind = "merged model" if adapter else "model"
    out.print(f"{kind} written to {out_dir} (loads with AutoModelForCausalLM.from_pretrained)")


def report(run: Path = typer.Argument(..., help="A run directory.")) -> None:
    """(Re)build a run's report.html from its files."""
    from rftkit.eval.report import write_report

    if not (run / "metrics.jsonl").exists():
        raise RftkitError(f"{run}: not a run directory (no metrics.jsonl)")
    out.print(f"report: {write_report(run)}")
