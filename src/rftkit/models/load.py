"""Loading and saving policies: Hugging Face directories, optionally with a LoRA adapter.

`load_policy` accepts a model directory, a PEFT adapter directory (its base is loaded and
the adapter merged, so training continues from the adapted weights), or a hub name when the
user is online. On CPU everything stays in fp32 (unless rftkit.precision asks for bf16) with
denormals flushed: a sharpening policy produces denormal floats that otherwise slow every
step 10-40x.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch
import transformers
from transformers import AutoModelForCausalLM, AutoTokenizer

from rftkit.config import LoraOptions
from rftkit.data.chat import ensure_chat_template
from rftkit.errors import RftkitError

transformers.logging.set_verbosity_error()
transformers.utils.logging.disable_progress_bar()


def resolve_device(device: str = "auto") -> torch.device:
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise RftkitError("device 'cuda' was asked for, but no CUDA GPU is visible", fix="set rftkit.device: cpu")
    return torch.device(device)


def setup_cpu() -> None:
    """CPU facts that matter: flush denormals, and use every core for intra-op threads."""
    torch.set_flush_denormal(True)
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", cores or 1)))


def load_tokenizer(name_or_path: str) -> Any:
    tokenizer = _from_pretrained(AutoTokenizer, name_or_path)
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    ensure_chat_template(tokenizer)
    return tokenizer


def load_policy(name_or_path: str, device: str = "auto", lora: LoraOptions | None = None, precision: str = "auto"):
    """(model, tokenizer) ready to train, in the dtype `precision` (rftkit.precision) gives on the
    device (`model_dtype`), LoRA-wrapped when `lora.enabled`."""
    target = resolve_device(device)
    if target.type == "cpu":
        setup_cpu()
    adapter = Path(name_or_path) / "adapter_config.json"
    if adapter.exists():
        model, tokenizer = _load_adapter(Path(name_or_path), target, precision)
    else:
        tokenizer = load_tokenizer(name_or_path)
        model = _from_pretrained(AutoModelForCausalLM, name_or_path, dtype=model_dtype(precision, target)).to(target)
        if precision == "auto" and model.dtype == torch.float16:
            model = model.to(torch.bfloat16)  # fp16 gradients need loss scaling; bf16's range is fp32's
    if lora is not None and lora.enabled:
        model = wrap_lora(model, lora)
    return model, tokenizer


def model_dtype(precision: str, device: torch.device) -> torch.dtype | str:
    """The dtype a policy is read in. auto: fp32 on CPU, the checkpoint's own on a GPU.

    >>> model_dtype("auto", torch.device("cpu")), model_dtype("bf16-pure", torch.device("cpu"))
    (torch.float32, torch.bfloat16)
    >>> model_dtype("auto", torch.device("cuda"))
    'auto'
    """
    if precision == "fp32" or (precision == "auto" and device.type == "cpu"):
        return torch.float32
    if precision in ("bf16", "bf16-pure"):
        return torch.bfloat16
    if precision == "auto":
        return "auto"
    raise RftkitError(f"rftkit.precision: {precision!r} is not known", fix="use auto, fp32, bf16 or bf16-pure")


def is_narrow(tensor: torch.Tensor) -> bool:
    """A floating-point tensor of fewer bits than fp32 (bf16, fp16)."""
    return tensor.is_floating_point() and tensor.element_size() < 4


def wrap_lora(model: Any, lora: LoraOptions) -> Any:
    from peft import LoraConfig, get_peft_model

    from rftkit.models.lora import use_addmm_layers

    config = LoraConfig(
        r=lora.r,
        lora_alpha=lora.alpha,
        lora_dropout=lora.dropout,
        target_modules=lora.target_modules,
        task_type="CAUSAL_LM",
    )
    return use_addmm_layers(get_peft_model(model, config))


def resume_lora(base: Any, adapter_dir: Path) -> Any:
    """A LoRA policy from a checkpoint's adapter, trainable, on top of `base`."""
    from peft import PeftModel

    from rftkit.models.lora import use_addmm_layers

    return use_addmm_layers(PeftModel.from_pretrained(base, str(adapter_dir), is_trainable=True))


def _load_adapter(path: Path, target: torch.device, precision: str):
    from peft import PeftModel

    base = json.loads((path / "adapter_config.json").read_text()).get("base_model_name_or_path")
    if not base:
        raise RftkitError(f"{path}/adapter_config.json: no base_model_name_or_path", fix="export the adapter with rftkit")
    base_model, tokenizer = load_policy(base, str(target), precision=precision)
    merged = PeftModel.from_pretrained(base_model, str(path)).merge_and_unload()
    return merged, tokenizer


def _from_pretrained(cls: Any, name_or_path: str, **kwargs: Any) -> Any:
    try:
        return cls.from_pretrained(name_or_path, **kwargs)
    except OSError as err:
        local = Path(name_or_path).exists()
        fix = (
            "check that it is a save_pretrained directory (config.json, weights, tokenizer files)"
            if local
            else "pass a local model directory (e.g. one made by `rftkit model init`), or go online for hub names"
        )
        raise RftkitError(f"cannot load model {name_or_path!r}: {str(err).splitlines()[0]}", fix=fix) from None


def parameter_count_of(name_or_path: str) -> int | None:
    """Distinct parameters of the model a job names (tied embeddings once), counted on the meta
    device from its config alone: no weights are read. An adapter directory counts its base.
    None when the config cannot be read here (a hub name offline and not in the cache)."""
    from transformers import AutoConfig

    from rftkit.models.tiny import parameter_count

    adapter = Path(name_or_path) / "adapter_config.json"
    if adapter.exists():
        base = json.loads(adapter.read_text()).get("base_model_name_or_path")
        return parameter_count_of(base) if base else None
    try:
        config = AutoConfig.from_pretrained(name_or_path, local_files_only=True)
        with torch.device("meta"):
            model = AutoModelForCausalLM.from_config(config)
    except (OSError, ValueError, KeyError):
        return None
    return parameter_count(model)


def save_policy(model: Any, tokenizer: Any, out: str | Path) -> Path:
    """Write a Hugging Face directory (an adapter directory for a PEFT model)."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out


def trunk_and_head(model: torch.nn.Module):
    """The transformer body and the output layer of a causal LM (PEFT-wrapped or not)."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    return base.get_decoder(), base.get_output_embeddings()
