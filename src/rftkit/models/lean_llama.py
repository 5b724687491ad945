"""A lean forward pass for Llama-family models: the same mathematics with a third of the operators.

For a model of a few million parameters, framework overhead costs more than arithmetic:
Hugging Face's layers run ~50 small operators per layer (a mask built each call, rotary
embeddings through `cat`, a cache grown by `cat`, a flash-attention kernel meant for long
queries, RMSNorm as five element-wise ops). This module reads the same weights and runs
~15 per layer:

- q, k and v come from one matrix multiply (their weights concatenated), and so do gate and
  up; RMSNorm is torch's fused `rms_norm`;
- a one-token query attends with two batched matrix multiplies and an additive bias (0 or
  -inf) built once for all layers;
- keys and values go to a caller-supplied function (decoding writes them in place into a
  preallocated cache);
- with LoRA, each adapted weight is merged into a copy (`W + scale * B @ A`), so sampling
  pays no adapter matmuls.

It is for sampling (no gradients). Training through it was measured no faster: a training
step of these models is bound by its matrix multiplies (~95 GFLOP/s on one core, near the
machine's peak), not by operator overhead, and merged LoRA weights would cost a full weight
gradient.

It applies to Llama-architecture causal LMs (Llama, Qwen2 and Mistral without sliding window):
plain RoPE, SiLU gating, RMSNorm, optional attention biases, grouped-query attention.
`LeanWeights.of` answers None for anything else and callers use the model's own forward.
Equality with that forward is tested to float precision (tests/unit/models/test_lean_llama.py).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F

SUPPORTED = {"llama", "qwen2", "mistral"}

# (layer index, keys [B, kv_heads, T, D], values) -> the keys and values to attend over
KeyValueHook = Callable[[int, torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]


@dataclass(frozen=True)
class LayerWeights:
    norm_in: torch.Tensor
    qkv: torch.Tensor  # [(heads + 2 kv_heads) * head_dim, hidden]
    qkv_bias: torch.Tensor | None
    out: torch.Tensor
    out_bias: torch.Tensor | None
    norm_post: torch.Tensor
    gate_up: torch.Tensor  # [2 * intermediate, hidden]
    down: torch.Tensor


@dataclass(frozen=True)
class LeanWeights:
    """A Llama-family causal LM's weights laid out for `forward` (LoRA adapters merged)."""

    embed: torch.Tensor
    layers: list[LayerWeights]
    norm_final: torch.Tensor
    head: torch.Tensor
    inv_freq: torch.Tensor
    heads: int
    kv_heads: int
    head_dim: int
    eps: float

    @classmethod
    @torch.no_grad()
    def of(cls, model: torch.nn.Module) -> LeanWeights | None:
        """The weights of a causal LM (PEFT-wrapped or not), or None when this forward does
        not apply to its architecture."""
        base = model.get_base_model() if hasattr(model, "get_base_model") else model
        body, config = getattr(base, "model", None), getattr(base, "config", None)
        if not hasattr(body, "layers") or not _supported(config):
            return None
        try:
            layers = [_layer_weights(layer) for layer in body.layers]
            embed, head = _weight(body.embed_tokens), _weight(base.get_output_embeddings())
        except _Unsupported:
            return None
        heads = config.num_attention_heads
        return cls(embed=embed, layers=layers, norm_final=body.norm.weight,
                   head=head, inv_freq=body.rotary_emb.inv_freq,
                   heads=heads, kv_heads=config.num_key_value_heads or heads,
                   head_dim=getattr(config, "head_dim", None) or config.hidden_size // heads, eps=config.rms_norm_eps)

    def norm(self, hidden: torch.Tensor) -> torch.Tensor:
        return F.rms_norm(hidden, hidden.shape[-1:], self.norm_final, self.eps)

    def logits(self, hidden: torch.Tensor) -> torch.Tensor:
        return F.linear(self.norm(hidden), self.head)


def _supported(config) -> bool:
    model_type = getattr(config, "model_type", None)
    if model_type not in SUPPORTED:
        return False
    rope = getattr(config, "rope_parameters", None) or getattr(config, "rope_scaling", None) or {}
    # Qwen2 configs name a sliding window that only applies with use_sliding_window
    window = None if model_type == "qwen2" else getattr(config, "sliding_window", None)
    return (rope.get("rope_type", rope.get("type", "default")) == "default"
            and getattr(config, "hidden_act", "silu") == "silu"
            and not getattr(config, "mlp_bias", False)
            and not getattr(config, "use_sliding_window", False)
            and not window)


class _Unsupported(Exception):
    """A layer this forward does not compute (a different block, mixed q/k/v biases) or an
    adapter it cannot merge (not plain LoRA)."""


def _weight(module: torch.nn.Module) -> torch.Tensor:
    """A linear or embedding layer's weight with any active, unmerged LoRA adapters added in."""
    base = getattr(module, "base_layer", None)
    if base is None:
        return module.weight
    from rftkit.models.lora import plain_lora  # imports PEFT, which wrapped this module already

    if not plain_lora(module):
        raise _Unsupported
    weight = base.weight
    if getattr(module, "disable_adapters", False) or getattr(module, "merged", False):
        return weight
    known = {**getattr(module, "lora_A", {}), **getattr(module, "lora_embedding_A", {})}
    for adapter in (a for a in module.active_adapters if a in known):
        weight = weight + module.get_delta_weight(adapter).to(weight.dtype)  # PEFT keeps adapters fp32
    return weight


def _bias(module: torch.nn.Module) -> torch.Tensor | None:
    return getattr(getattr(module, "base_layer", module), "bias", None)


def _layer_weights(layer: torch.nn.Module) -> LayerWeights:
    attention, mlp = getattr(layer, "self_attn", None), getattr(layer, "mlp", None)
    if attention is None or not hasattr(mlp, "gate_proj"):
        raise _Unsupported
    projections = (attention.q_proj, attention.k_proj, attention.v_proj)
    biases = [_bias(p) for p in projections]
    if any(b is not None for b in biases) and any(b is None for b in biases):
        raise _Unsupported
    return LayerWeights(
        norm_in=layer.input_layernorm.weight,
        qkv=torch.cat([_weight(p) for p in projections]),
        qkv_bias=torch.cat(biases) if biases[0] is not None else None,
        out=_weight(attention.o_proj),
        out_bias=_bias(attention.o_proj),
        norm_post=layer.post_attention_layernorm.weight,
        gate_up=torch.cat([_weight(mlp.gate_proj), _weight(mlp.up_proj)]),
        down=_weight(mlp.down_proj),
    )


def forward(w: LeanWeights, x_BTH: torch.Tensor, position_BT: torch.Tensor, bias_B1TW: torch.Tensor,
            key_values: KeyValueHook) -> torch.Tensor:
    """Hidden states [B, T, H] after every layer (before the final norm).

    `bias_B1TW` is added to the attention scores of the T queries over the W keys that
    `key_values` returns (0 where a query may look, -inf where not). With one query (T = 1),
    keys and values laid out as slices of a cache, `[B, kv_heads, :W]`, are read in place.
    """
    B, T, _ = x_BTH.shape
    cos, sin = _rotary(w.inv_freq, position_BT, x_BTH.dtype)
    bias = bias_B1TW
    if T == 1:  # one query: the bias laid out once for every layer's baddbmm, [B * kv_heads, heads / kv_heads, W]
        shape = (B, w.kv_heads, w.heads // w.kv_heads, bias_B1TW.shape[-1])
        bias = bias_B1TW.expand(shape).reshape(B * w.kv_heads, *shape[2:])
    for index, layer in enumerate(w.layers):
        h = F.rms_norm(x_BTH, x_BTH.shape[-1:], layer.norm_in, w.eps)
        qkv = F.linear(h, layer.qkv, layer.qkv_bias).view(B, T, w.heads + 2 * w.kv_heads, w.head_dim)
        qk = qkv[:, :, : w.heads + w.kv_heads]
        qk = qk * cos + _rotate_half(qk) * sin  # RoPE (Su et al. 2021), in HF's half-split layout
        keys, values = key_values(index, qk[:, :, w.heads:].transpose(1, 2),
                                  qkv[:, :, w.heads + w.kv_heads:].transpose(1, 2))
        attended = _attend(qk[:, :, : w.heads].transpose(1, 2), keys, values, bias)  # [B, heads, T, D]
        x_BTH = x_BTH + F.linear(attended.transpose(1, 2).reshape(B, T, -1), layer.out, layer.out_bias)
        h = F.rms_norm(x_BTH, x_BTH.shape[-1:], layer.norm_post, w.eps)
        gate, up = F.linear(h, layer.gate_up).chunk(2, dim=-1)
        x_BTH = x_BTH + F.linear(F.silu(gate) * up, layer.down)
    return x_BTH


def prompt_bias(attention_mask_BT: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """[B, 1, T, T] for left-padded prompts: a query sees earlier real tokens, and always
    itself (so a padding query's row is never all -inf, which would turn into NaN)."""
    T = attention_mask_BT.shape[1]
    device = attention_mask_BT.device
    causal = torch.ones(T, T, dtype=torch.bool, device=device).tril()
    visible = (causal & attention_mask_BT.bool()[:, None, :]) | torch.eye(T, dtype=torch.bool, device=device)
    return additive(visible, dtype)[:, None]


def additive(visible: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """0 where visible, -inf elsewhere."""
    return torch.zeros(visible.shape, dtype=dtype, device=visible.device).masked_fill_(~visible, float("-inf"))


def _attend(q_BHTD, keys_BKWD, values_BKWD, bias) -> torch.Tensor:
    """Softmax attention of H query heads over K key/value heads (H/K queries share one).

    One query token (decoding) is two small batched matmuls, several times faster on CPU than
    the flash kernel; the bias comes in added by the first (`baddbmm`, bias [B*K, H/K, W]),
    which saves an element-wise pass a layer. Longer queries (a prefill) use the flash
    kernel (bias [B, 1, T, W]), which never holds the [T, W] score matrix of a long prompt.
    """
    B, H, T, D = q_BHTD.shape
    K, W = keys_BKWD.shape[1], keys_BKWD.shape[2]
    if T > 1:
        return F.scaled_dot_product_attention(q_BHTD, keys_BKWD, values_BKWD, attn_mask=bias, enable_gqa=K != H)
    # N = B * K pairs of row and kv head; the query heads of one kv head are consecutive
    q_NGD = (q_BHTD * D**-0.5).reshape(B * K, H // K, D)
    scores = torch.baddbmm(bias, q_NGD, keys_BKWD.reshape(B * K, W, D).transpose(1, 2))
    return torch.bmm(scores.softmax(-1), values_BKWD.reshape(B * K, W, D)).reshape(B, H, 1, D)


def _rotary(inv_freq: torch.Tensor, position_BT: torch.Tensor, dtype: torch.dtype):
    angles = position_BT[..., None].float() * inv_freq.float()
    angles = torch.cat([angles, angles], dim=-1)[:, :, None, :]  # [B, T, 1, D]
    return angles.cos().to(dtype), angles.sin().to(dtype)


def _rotate_half(x: torch.Tensor) -> torch.Tensor:
    half = x.shape[-1] // 2
    return torch.cat([-x[..., half:], x[..., :half]], dim=-1)
