"""rftkit: self-hostable reinforcement fine-tuning for language models.

The flow (see DESIGN.md): data -> rollout -> graders -> advantages -> policy update ->
checkpoint/eval/monitor. Users reach it through the `rftkit` command, the job spec
(`rftkit.config.JobSpec`) and, later, the OpenAI-compatible REST API.
"""

from rftkit.errors import RftkitError

__version__ = "0.1.0"
__all__ = ["RftkitError", "__version__"]
