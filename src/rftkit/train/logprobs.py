"""Log-probabilities of completion tokens, the quantity every policy loss is built on.

Two facts make these right and cheap:
- position ids follow the attention mask (a left-padded prompt starts at position 0), the
  same as in sampling; otherwise every gradient is quietly computed for the wrong positions;
- a prompt shared by a group's rows is computed once (see `completion_states`): the batch
  says which rows form a group, so nothing is inferred from the tokens;
- only completion positions go through the output layer, a chunk of rows at a time (up to
  CHUNK_LOGITS logits), so a large [N, T, vocab] log-softmax never exists. For large
  vocabularies each chunk's logits are recomputed in the backward pass instead of being kept.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch.utils.checkpoint import checkpoint
from transformers import DynamicCache

from rftkit.models.load import trunk_and_head
from rftkit.types import Batch, Trajectory

LARGE_VOCAB = 32_768  # above this, recompute chunk logits in backward rather than store them
CHUNK_LOGITS = 1 << 22  # most logits (rows x completion tokens x vocab) computed at once: 16 MiB in fp32


def pack(trajectories: Sequence[Trajectory], group_N: Sequence[int], pad_id: int,
         device: torch.device) -> tuple[Batch, torch.Tensor]:
    """N trajectories as one Batch (see `rftkit.types.Batch`), and their sampling log-probs [N, C].

    `group_N[n]` is row n's group: rows of a group share a prompt, which is then computed once.
    Every tensor is built in one call from padded rows.
    """
    prompt_width = max(len(t.prompt_ids) for t in trajectories)
    width = max(1, max(len(t.completion_ids) for t in trajectories))
    ids, attention, present, trained, logprobs = [], [], [], [], []
    for t in trajectories:
        left, right = prompt_width - len(t.prompt_ids), width - len(t.completion_ids)
        ids.append([pad_id] * left + list(t.prompt_ids) + list(t.completion_ids) + [pad_id] * right)
        attention.append([0] * left + [1] * (len(t.prompt_ids) + len(t.completion_ids)) + [0] * right)
        present.append([1] * len(t.completion_ids) + [0] * right)
        trained.append(list(t.loss_mask) + [0] * right)
        logprobs.append(list(t.logprobs) + [0.0] * right)
    attention_NT = torch.tensor(attention)
    positions_NT = (attention_NT.cumsum(-1) - 1).clamp(min=0)
    batch = Batch(torch.tensor(ids).to(device), attention_NT.to(device), positions_NT.to(device),
                  torch.tensor(present).to(device), torch.tensor(trained).to(device),
                  torch.tensor(list(group_N)).to(device), prompt_width)
    return batch, torch.tensor(logprobs).to(device)


def completion_hidden_states(model: torch.nn.Module, batch: Batch) -> torch.Tensor:
    """[N, C, H]: the hidden state that predicts each completion token."""
    trunk, _ = trunk_and_head(model)
    return completion_states(trunk, batch)


def completion_states(trunk: torch.nn.Module, batch: Batch) -> torch.Tensor:
    """[N, C, H] from a transformer body, reading each distinct prompt once.

    The G rows of a group repeat one prompt. Its keys and values are computed once and
    shared by those rows (gradients from every row add up in the shared prefix), then the
    completions run on top of that cache: the prompt's share of the work is divided by G.
    The last completion token predicts nothing, so it is not fed at all.
    """
    P, C = batch.prompt_width, batch.completion_mask_NC.shape[1]
    ids, mask, positions = batch.input_ids_NT, batch.attention_mask_NT, batch.position_ids_NT
    first, row_prefix, group = _shared_prompts(batch.group_N)

    def spread(t: torch.Tensor) -> torch.Tensor:  # [D, ...] -> each row's [N, ...]
        if group:  # an expand's backward sums each group; an index's scatters row by row (2 ms a layer on M)
            return t[:, None].expand(t.shape[0], group, *t.shape[1:]).flatten(0, 1)
        return t[row_prefix]

    cache = DynamicCache()
    prefix_DPH = trunk(input_ids=ids[first, :P], attention_mask=mask[first, :P], position_ids=positions[first, :P],
                       past_key_values=cache, use_cache=True).last_hidden_state
    first_state_N1H = spread(prefix_DPH[:, -1:])  # predicts completion token 0
    if C == 1:
        return first_state_N1H
    for layer in cache.layers:  # a plain DynamicCache: each layer holds its keys and values as tensors
        layer.keys, layer.values = spread(layer.keys), spread(layer.values)
    rest_NCH = trunk(input_ids=ids[:, P:P + C - 1], attention_mask=mask[:, :P + C - 1],
                     position_ids=positions[:, P:P + C - 1], past_key_values=cache, use_cache=True).last_hidden_state
    return torch.cat([first_state_N1H, rest_NCH], dim=1)


def _shared_prompts(group_N: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, int]:
    """(a row of each group [D], each row's index among those [N], G or 0), from the batch's layout.

    G is the group size when rows come in consecutive groups of G, as a step's batch does (then
    the D rows are the groups' first rows, in order); else 0.
    """
    rows, device = len(group_N), group_N.device
    _, row_prefix = torch.unique(group_N, return_inverse=True)
    distinct = int(row_prefix.max()) + 1
    group = rows // distinct
    if group * distinct == rows and torch.equal(row_prefix, torch.arange(rows, device=device) // group):
        return torch.arange(0, rows, group, device=device), row_prefix, group
    first = torch.empty(distinct, dtype=torch.long, device=device)
    first.scatter_(0, row_prefix, torch.arange(rows, device=device))
    return first, row_prefix, 0


def _chunk_logprobs(head: torch.nn.Module, hidden_nCH, tokens_nC, temperature: float, entropy_grad: bool):
    return _scores(head(hidden_nCH), tokens_nC, temperature, entropy_grad)


def _scores(logits_nCV: torch.Tensor, tokens_nC, temperature: float, entropy_grad: bool):
    logits = logits_nCV.float() / temperature  # [n, C, V]
    normaliser = torch.logsumexp(logits, dim=-1)
    logprobs = logits.gather(-1, tokens_nC[..., None])[..., 0] - normaliser
    # entropy = logsumexp(z) - sum softmax(z) z; detached unless an entropy bonus needs its gradient
    source, norm = (logits, normaliser) if entropy_grad else (logits.detach(), normaliser.detach())
    entropy = norm - (source.softmax(-1) * source).sum(-1)
    return logprobs, entropy


@dataclass
class TokenScores:
    logprobs_NC: torch.Tensor
    entropy_NC: torch.Tensor
    hidden_NCH: torch.Tensor | None = None


def completion_logprobs(
    model: torch.nn.Module,
    batch: Batch,
    temperature: float = 1.0,
    *,
    entropy_grad: bool = False,
    chunk_logits: int = CHUNK_LOGITS,
    keep_hidden: bool = False,
) -> TokenScores:
    """Log-probabilities and entropies of the completion tokens, [N, C].

    `temperature` scales logits as sampling did, so that these equal the sampling pass's
    log-probabilities. The entropy carries a gradient only when `entropy_grad` (an entropy
    bonus); otherwise it is a detached metric.
    """
    _, head = trunk_and_head(model)
    hidden = completion_hidden_states(model, batch)
    tokens = batch.completion_ids_NC
    recompute = torch.is_grad_enabled() and head.weight.shape[0] > LARGE_VOCAB
    # split, not sliced: the backward of a slice writes its gradient into a zeroed tensor of
    # the whole batch's size, one per chunk; a split's backward is one concatenation
    rows = max(1, chunk_logits // max(1, tokens.shape[1] * head.weight.shape[0]))
    parts = []
    for hidden_nCH, tokens_nC in zip(hidden.split(rows), tokens.split(rows)):
        args = (head, hidden_nCH, tokens_nC, max(temperature, 1e-6), entropy_grad)
        parts.append(checkpoint(_chunk_logprobs, *args, use_reentrant=False) if recompute else _chunk_logprobs(*args))
    logprobs = torch.cat([p[0] for p in parts]) * batch.completion_mask_NC
    entropy = torch.cat([p[1] for p in parts]) * batch.completion_mask_NC
    return TokenScores(logprobs, entropy, hidden if keep_hidden else None)


def whole_forward_logprobs(model: torch.nn.Module, batch: Batch, temperature: float = 1.0, *,
                           entropy_grad: bool = False) -> TokenScores:
    """`completion_logprobs` through the model's own forward, one call over every position.

    FSDP2 (`scale/fsdp.py`) gathers and scatters its root unit's weights (embeddings, final norm,
    head) in hooks on the model's own forward, which `completion_logprobs` bypasses to read each
    prompt once; so a sharded update takes this path: the same values to float rounding, at the
    cost of each row recomputing its prompt and of [N, C, V] logits at once."""
    P, C = batch.prompt_width, batch.completion_mask_NC.shape[1]
    out = model(input_ids=batch.input_ids_NT[:, :P + C - 1], attention_mask=batch.attention_mask_NT[:, :P + C - 1],
                position_ids=batch.position_ids_NT[:, :P + C - 1], use_cache=False)
    logprobs, entropy = _scores(out.logits[:, P - 1:], batch.completion_ids_NC, max(temperature, 1e-6), entropy_grad)
    return TokenScores(logprobs * batch.completion_mask_NC, entropy * batch.completion_mask_NC)
