"""④⑤ The math of RL fine-tuning: advantages, policy losses, KL — pure torch, no I/O.

Each function takes tensors and returns tensors (and a stats dict); none reads a config
object. Shape suffixes name dimensions: B prompts, G samples per prompt, N = B*G sequences,
T completion tokens.
"""

from rftkit.algo.advantages import ADVANTAGE_ESTIMATORS, gae, informative_groups
from rftkit.algo.kl import KL_ESTIMATORS, kl_divergence
from rftkit.algo.losses import AGGREGATIONS, POLICY_LOSSES, aggregate, entropy_from_logits, value_loss

__all__ = [
    "ADVANTAGE_ESTIMATORS",
    "AGGREGATIONS",
    "KL_ESTIMATORS",
    "POLICY_LOSSES",
    "aggregate",
    "entropy_from_logits",
    "gae",
    "informative_groups",
    "kl_divergence",
    "value_loss",
]
