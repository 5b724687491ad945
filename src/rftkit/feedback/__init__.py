"""Human and AI feedback -> a calibrated reward model -> a grader to optimise against.

- records.py     the nouns (ComparisonItem, Judgement, FeedbackRecord) and the JSONL line
- store.py       FeedbackStore: items, judgements, criteria in SQL (SQLite by default)
- samples.py     comparison items from a run's samples.jsonl or an uploaded file
- prelabel.py    AI-judge pre-labels (score_model / label_model) that people confirm or correct
- agreement.py   agreement between reviewers, and between judge and people
- losses.py      Bradley-Terry and rating losses (pure torch)
- calibration.py temperature / Platt / isotonic maps and expected calibration error (pure math)
- model.py       RewardModel: a causal LM's body with a scalar head per criterion; save / load
- dataset.py     judgements -> pairs and labels per head; the train / calibration / test split
- training.py    RMOptions and train_reward_model (early stopping, progress bar)
- validation.py  calibration fitting, held-out metrics, metrics.json and report.md

Importing this package imports no torch: the store and records serve the API server too.
"""

from rftkit.feedback.records import Answer, ComparisonItem, FeedbackRecord, Judgement, read_feedback_jsonl
from rftkit.feedback.store import FeedbackStore

__all__ = ["Answer", "ComparisonItem", "FeedbackRecord", "FeedbackStore", "Judgement", "read_feedback_jsonl"]
