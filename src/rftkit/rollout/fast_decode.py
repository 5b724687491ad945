"""Decoding Llama-family models through the lean forward, over a preallocated key/value cache.

On CPU, generation goes through here. The cache is one tensor per layer,
`[rows, kv_heads, prompt + new tokens, head_dim]`, written in place: since prompts are
left-padded, every row writes the same column at each step. A
one-token query attends with two small matrix multiplies (flash attention is built for long
queries and is several times slower for one). With LoRA, each adapted weight is merged into a
temporary copy for the call, so decoding pays no adapter matmuls.
"""

from __future__ import annotations

import torch

from rftkit.models import lean_llama
from rftkit.models.lean_llama import LeanWeights


# Above this size the matmuls dwarf operator overhead, and the concatenated weights that
# `LeanWeights` builds for each call (a copy of most of the model) would cost real memory
# and time: 272 MiB and 0.2 s per call were measured for a 168M-parameter Llama.
MAX_PARAMETERS = 50_000_000


def decode_weights(model: torch.nn.Module) -> LeanWeights | None:
    """The model's weights for decoding (LoRA merged), or None where the model's own forward
    is used: an architecture the lean forward lacks, a model over MAX_PARAMETERS, or a GPU,
    where per-operator overhead is hidden by asynchronous kernels and the model's fused
    attention is the faster."""
    if next(model.parameters()).device.type != "cpu":
        return None
    if sum(p.numel() for p in model.parameters()) > MAX_PARAMETERS:
        return None
    return LeanWeights.of(model)


class DecodeState:
    """The cache of a batch being decoded, and the forward passes that fill it.

    Made for the distinct prompts: `prefill` runs them (left-padded), `select` then gives each
    decoding row its prompt's cache (and later drops finished rows), `step` feeds one token
    per row. `width` is the prompt width plus the most tokens to be generated.
    """

    def __init__(self, weights: LeanWeights, rows: int, width: int, dtype: torch.dtype, device: torch.device):
        w = weights
        shape = (rows, w.kv_heads, width, w.head_dim)
        self.weights = w
        self.keys = [torch.zeros(shape, dtype=dtype, device=device) for _ in w.layers]
        self.values = [torch.zeros(shape, dtype=dtype, device=device) for _ in w.layers]
        # additive attention bias per row and cache column: 0 where a real token is, -inf elsewhere
        self.bias_RW = torch.full((rows, width), float("-inf"), dtype=dtype, device=device)
        self.length = 0

    @torch.no_grad()
    def prefill(self, input_ids_DP: torch.Tensor, attention_mask_DP: torch.Tensor,
                position_ids_DP: torch.Tensor) -> torch.Tensor:
        """Logits of each prompt's last position, [D, V]; fills cache columns 0..P-1."""
        P = input_ids_DP.shape[1]
        self.bias_RW[:, :P] = lean_llama.additive(attention_mask_DP.bool(), self.bias_RW.dtype)
        bias_D1PP = lean_llama.prompt_bias(attention_mask_DP, self.bias_RW.dtype)
        hidden = lean_llama.forward(self.weights, self.weights.embed[input_ids_DP], position_ids_DP, bias_D1PP,
                                    self._writer(slice(0, P)))
        self.length = P
        return self.weights.logits(hidden[:, -1])

    def select(self, index_N: torch.Tensor) -> None:
        """Row i becomes the current row index_N[i]: a group's G rows take their prompt's
        cache, and a finished row leaves the batch."""
        # index_select copies whole rows; `k[index_N]` goes element by element, 4-5x slower here
        self.keys = [k.index_select(0, index_N) for k in self.keys]
        self.values = [v.index_select(0, index_N) for v in self.values]
        self.bias_RW = self.bias_RW.index_select(0, index_N)

    @torch.no_grad()
    def step(self, token_B: torch.Tensor, position_B: torch.Tensor) -> torch.Tensor:
        """Feed one token per row at the next cache column; the next-token logits, [B, V]."""
        column = self.length
        self.bias_RW[:, column] = 0.0
        bias_B11W = self.bias_RW[:, None, None, : column + 1]
        hidden = lean_llama.forward(self.weights, self.weights.embed[token_B][:, None], position_B[:, None],
                                    bias_B11W, self._writer(slice(column, column + 1)))
        self.length = column + 1
        return self.weights.logits(hidden[:, 0])

    def _writer(self, columns: slice):
        def write(layer: int, keys_BKTD: torch.Tensor, values_BKTD: torch.Tensor):
            self.keys[layer][:, :, columns] = keys_BKTD
            self.values[layer][:, :, columns] = values_BKTD
            return self.keys[layer][:, :, : columns.stop], self.values[layer][:, :, : columns.stop]
        return write
