"""The jobs service's core, with no HTTP in it.

- `states`: the job state machine (OpenAI's statuses plus pausing / paused) and its transitions.
- `db`: the tables, and an engine for SQLite (WAL, busy timeout) or PostgreSQL.
- `store`: files, jobs, events, idempotency keys — every query the API and the worker make.
- `keys`: API keys, stored hashed and compared in constant time.
- `runs`: what a run directory holds (events to ingest, checkpoints, metrics, samples).
- `supervisor`: runs each job as a `python -m rftkit.cli train` child process, pauses, resumes,
  cancels, and recovers jobs left running by a crash.
"""
