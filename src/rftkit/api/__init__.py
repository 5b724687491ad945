"""`rftkit serve`: OpenAI's fine-tuning API, and a dashboard, over the jobs service.

Nothing here imports torch: training and inference run in worker processes, so the server
starts in a moment and a crashed job cannot take it down.
"""

from rftkit.api.app import ServiceSettings, create_app

__all__ = ["ServiceSettings", "create_app"]
