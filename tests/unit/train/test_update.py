"""The policy update reads the loss mask and the importance weights as documented."""

import copy

import torch

from rftkit.config import RftkitOptions
from rftkit.models.tiny import build_tiny
from rftkit.resolved import UpdateSettings, resolve_algorithm
from rftkit.train.logprobs import pack
from rftkit.train.update import StepTensors, update_actor
from rftkit.types import Trajectory, Turn

MODEL, TOKENIZER = build_tiny("tiny", seed=4)
SETTINGS = UpdateSettings(epochs=1, mini_batches=1, micro_batch_tokens=10_000,
                          algorithm=resolve_algorithm(RftkitOptions()), temperature=1.0, max_completion_tokens=8,
                          kl_coef=0.0, kl_estimator="k3", entropy_coef=0.0, max_grad_norm=1e9, value_coef=0.5,
                          value_clip=0.2)


def two_turns(loss_mask):
    """A completion of 6 tokens: the model's 2, a tool's 2, the model's 2 (as `loss_mask` marks them)."""
    turns = (Turn("assistant", 0, 2), Turn("tool", 2, 4), Turn("assistant", 4, 6))
    return Trajectory((257, 49, 43, 50), (51, 52, 53, 54, 55, 258), (-1.0,) * 6, loss_mask, turns, "stop", "completed")


def moved_parameters(trajectories, advantages, weights=None):
    """Parameters after one plain-SGD update of a copy of MODEL."""
    model = copy.deepcopy(MODEL)
    batch, sampled = pack(trajectories, list(range(len(trajectories))), TOKENIZER.pad_token_id, torch.device("cpu"))
    tensors = StepTensors(advantages, sampled, importance_weights=weights)
    optimizer = torch.optim.SGD(model.parameters(), lr=1.0)
    update_actor(model, optimizer, batch, tensors, SETTINGS, torch.Generator().manual_seed(0))
    return [p.detach() for p in model.parameters()]


def test_the_loss_mask_zeroes_the_gradient_of_masked_tokens():
    masked = [two_turns((1, 1, 0, 0, 1, 1))]
    # advantages the trainer would never put on tool tokens: the mask alone must keep them out
    base = torch.tensor([[1.0, 1.0, 0.0, 0.0, 1.0, 1.0]])
    wild = torch.tensor([[1.0, 1.0, 50.0, -80.0, 1.0, 1.0]])
    for a, b in zip(moved_parameters(masked, base), moved_parameters(masked, wild)):
        assert torch.equal(a, b)
    unmasked = [two_turns((1, 1, 1, 1, 1, 1))]
    assert any(not torch.equal(a, b) for a, b in zip(moved_parameters(unmasked, base),
                                                     moved_parameters(unmasked, wild)))  # so the test can fail


def test_unit_importance_weights_give_the_uncorrected_update():
    trajectories = [two_turns((1, 1, 0, 0, 1, 1)), two_turns((1, 1, 1, 1, 1, 1))]
    advantages = torch.tensor([[0.5] * 6, [-0.5] * 6])
    plain = moved_parameters(trajectories, advantages)
    for a, b in zip(plain, moved_parameters(trajectories, advantages, torch.ones(2, 6))):
        assert torch.equal(a, b)
    halved = moved_parameters(trajectories, advantages, torch.full((2, 6), 0.5))
    start = list(MODEL.parameters())
    for a, b, s in zip(plain, halved, start):  # SGD: half the weight, half the step
        torch.testing.assert_close(b - s.detach(), (a - s.detach()) / 2, rtol=1e-4, atol=1e-7)
