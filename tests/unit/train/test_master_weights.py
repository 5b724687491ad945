"""fp32 master weights for a bf16 model (train/optim.py's MasterWeights): small updates are kept,
gradients sum in fp32, the model is the masters rounded, and a checkpoint resumes them exactly."""

import io

import pytest
import torch

from rftkit.config import Optimizer
from rftkit.errors import RftkitError
from rftkit.models.tiny import build_tiny
from rftkit.train.optim import make_optimizer, refuse_lost_masters, trained_parameters

RATE = 1e-6  # the rate real models train with: AdamW moves a weight by about this much a step


def bf16_tiny():
    model, _ = build_tiny("tiny", seed=0)
    return model.bfloat16()


def loss_of(model, seed: int) -> torch.Tensor:
    ids = torch.randint(0, 200, (2, 6), generator=torch.Generator().manual_seed(seed))
    return model(input_ids=ids).logits.float().square().mean()


def train(model, optimizer, steps: int, first_seed: int = 0) -> None:
    for seed in range(first_seed, first_seed + steps):
        optimizer.zero_grad(set_to_none=True)
        loss_of(model, seed).backward()
        optimizer.step()


def test_updates_below_bf16_resolution_are_kept_in_the_masters_and_lost_without_them():
    start = [p.detach().clone() for p in bf16_tiny().parameters()]
    mastered, pure = bf16_tiny(), bf16_tiny()
    with_masters = make_optimizer(mastered.parameters(), RATE, Optimizer(weight_decay=0.0))
    without = make_optimizer(pure.parameters(), RATE, Optimizer(weight_decay=0.0), master_weights=False)
    train(mastered, with_masters, 10)
    train(pure, without, 10)
    masters = trained_parameters(with_masters)
    assert all(m.dtype == torch.float32 for m in masters)
    assert all(s.dtype == torch.float32 for state in with_masters.state.values() for s in state.values()
               if s.dim())  # AdamW's moments
    moved = [float((m.detach() - s.float()).abs().max()) for m, s in zip(masters, start)]
    assert min(moved) > 5 * RATE  # every master moved by about 10 steps' worth
    # the bf16 model is the masters rounded, and rounding hides most of the movement
    for weight, master in zip(mastered.parameters(), masters):
        assert weight.dtype == torch.bfloat16 and torch.equal(weight, master.bfloat16())
    # stepped in place, a bf16 weight away from zero never moves: each update rounds away
    kept = [torch.equal(p[s.abs() > 0.05], s[s.abs() > 0.05]) for p, s in zip(pure.parameters(), start)]
    assert all(kept)


def test_gradients_accumulate_in_fp32_in_the_masters_and_the_model_keeps_none():
    model = bf16_tiny()
    optimizer = make_optimizer(model.parameters(), RATE, Optimizer())
    first, second = (torch.autograd.grad(loss_of(model, seed), list(model.parameters())) for seed in (0, 1))
    loss_of(model, 0).backward()
    loss_of(model, 1).backward()
    for weight, master, a, b in zip(model.parameters(), trained_parameters(optimizer), first, second):
        assert weight.grad is None
        assert master.grad.dtype == torch.float32
        torch.testing.assert_close(master.grad, a.float() + b.float(), rtol=0, atol=0)


def test_a_checkpoint_carries_the_masters_and_resume_continues_exactly():
    model = bf16_tiny()
    optimizer = make_optimizer(model.parameters(), RATE, Optimizer())
    train(model, optimizer, 3)
    saved = io.BytesIO()
    torch.save({"model": model.state_dict(), "optimizer": optimizer.state_dict()}, saved)
    train(model, optimizer, 2, first_seed=3)

    saved.seek(0)
    checkpoint = torch.load(saved, weights_only=False)
    resumed = bf16_tiny()
    resumed.load_state_dict(checkpoint["model"])  # the bf16 weights alone: the masters rounded
    again = make_optimizer(resumed.parameters(), RATE, Optimizer())
    again.load_state_dict(checkpoint["optimizer"])
    train(resumed, again, 2, first_seed=3)
    for a, b in zip(trained_parameters(optimizer), trained_parameters(again)):
        assert torch.equal(a, b)
    for a, b in zip(model.parameters(), resumed.parameters()):
        assert torch.equal(a, b)


def test_a_checkpoint_of_another_model_is_refused_with_the_fix():
    model = bf16_tiny()
    state = make_optimizer(model.parameters(), RATE, Optimizer()).state_dict()
    state["master_weights"] = state["master_weights"][:-1]
    with pytest.raises(RftkitError, match="rftkit.precision settings the checkpoint was written with"):
        make_optimizer(bf16_tiny().parameters(), RATE, Optimizer()).load_state_dict(state)


def test_fp32_weights_are_their_own_masters():
    model, _ = build_tiny("tiny", seed=0)
    optimizer = make_optimizer(model.parameters(), RATE, Optimizer())
    assert getattr(optimizer, "master_weights", None) is None
    assert all(a is b for a, b in zip(trained_parameters(optimizer), model.parameters()))
    # a bf16 base with an fp32 head trained alone (as under LoRA): the fp32 tensor is stepped as it is
    narrow = bf16_tiny()
    for p in narrow.parameters():
        p.requires_grad_(False)
    head = narrow.lm_head.weight
    narrow.lm_head.weight = torch.nn.Parameter(head.detach().float())
    only = make_optimizer(narrow.parameters(), RATE, Optimizer())
    assert trained_parameters(only) == [narrow.lm_head.weight]


@pytest.mark.parametrize("masters", [True, False])
def test_a_second_optimizer_over_the_same_model_takes_its_gradients(masters):
    model = bf16_tiny()
    earlier = make_optimizer(model.parameters(), RATE, Optimizer())  # an SFT warm start's, say
    later = make_optimizer(model.parameters(), RATE, Optimizer(), master_weights=masters)
    loss_of(model, 0).backward()
    assert all(m.grad is None for m in trained_parameters(earlier))
    assert all(m.grad is not None for m in trained_parameters(later))


def test_a_checkpoint_without_masters_widens_the_resumed_weights():
    """A checkpoint of bf16-pure (or one from before masters): the masters become the weights the
    model was resumed with, even when those were loaded after the optimizer was made (PPO's critic)."""
    trained = bf16_tiny()
    pure = make_optimizer(trained.parameters(), RATE, Optimizer(), master_weights=False)
    train(trained, pure, 2)
    resumed = bf16_tiny()
    optimizer = make_optimizer(resumed.parameters(), RATE, Optimizer())
    resumed.load_state_dict(trained.state_dict())
    optimizer.load_state_dict(pure.state_dict())
    for weight, master in zip(resumed.parameters(), trained_parameters(optimizer)):
        assert torch.equal(master, weight.float())


def test_resuming_masters_without_them_is_refused_with_the_fix():
    model = bf16_tiny()
    state = make_optimizer(model.parameters(), RATE, Optimizer()).state_dict()
    without = make_optimizer(model.float().parameters(), RATE, Optimizer())
    with pytest.raises(RftkitError, match="resume with rftkit.precision: bf16"):
        refuse_lost_masters(without, state)
    refuse_lost_masters(make_optimizer(bf16_tiny().parameters(), RATE, Optimizer()), state)  # with masters: fine

