"""The sandbox for untrusted grader code: a warm pool of jailed worker processes.

`SandboxPool(limits, programs).run(tasks)` grades many tasks concurrently across workers and
returns the replies in order. See jail.py and cgroups.py for what isolates a worker, worker.py
for what runs inside, and docs/graders.md for what is and is not isolated.
"""

from rftkit.graders.sandbox.limits import SandboxLimits
from rftkit.graders.sandbox.pool import SandboxPool, SandboxUnavailable, remove_leftovers

__all__ = ["SandboxLimits", "SandboxPool", "SandboxUnavailable", "remove_leftovers"]
