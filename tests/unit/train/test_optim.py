import torch

from rftkit.config import Optimizer
from rftkit.models.tiny import build_tiny
from rftkit.train.optim import make_optimizer


def test_cpu_optimizer_is_fused_and_updates_as_the_reference_adamw():
    options = Optimizer(weight_decay=0.1)
    fused_model, _ = build_tiny("tiny", seed=0)
    plain_model, _ = build_tiny("tiny", seed=0)
    fused = make_optimizer(fused_model.parameters(), 1e-3, options)
    plain = torch.optim.AdamW(plain_model.parameters(), lr=1e-3, betas=options.betas,
                              weight_decay=options.weight_decay, foreach=False)
    assert fused.param_groups[0]["fused"]
    generator = torch.Generator().manual_seed(0)
    for _ in range(3):
        for a, b in zip(fused_model.parameters(), plain_model.parameters()):
            a.grad = torch.randn(a.shape, generator=generator)
            b.grad = a.grad.clone()
        fused.step()
        plain.step()
    for a, b in zip(fused_model.parameters(), plain_model.parameters()):
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-6)


def test_an_optimizer_state_from_before_fusing_resumes():
    model, _ = build_tiny("tiny", seed=0)
    older = torch.optim.AdamW(model.parameters(), lr=1e-3, foreach=True)
    for p in model.parameters():
        p.grad = torch.ones_like(p)
    older.step()
    resumed = make_optimizer(model.parameters(), 1e-3, Optimizer())
    resumed.load_state_dict(older.state_dict())
    resumed.step()  # the checkpoint's settings (foreach) come with it; the step still runs
    assert int(resumed.state[next(model.parameters())]["step"]) == 2
