"""Build the NL->SQL example's files from rftkit's own generator (`rftkit.data.sql_task`, the
one `rftkit demo --task sql` uses), the same for the same seed:

    python examples/sql/make_data.py

Next to this script, for an instruction-tuned model that reads the schema (job.yaml):
- shop.sqlite: customers, products and orders;
- train.jsonl / valid.jsonl: reinforcement rows — the schema as a system turn, a question as
  the user turn, and `reference_sql`, which the `sql_execution` grader runs to get the
  expected result set; valid.jsonl holds template-and-value combinations train.jsonl lacks;
  the questions include those that name a customer or a product (`by_name`);
- sft.jsonl: 24 labelled rows (the reference SQL as the assistant turn) for a warm start.

In tiny/, for rftkit's tiny byte-level model (tiny/job.yaml): the same database, the questions
`rftkit demo --task sql` asks (none by name), no schema turn (the schema never changes, and
each byte is a token), and every training question labelled for the warm start.
"""

from __future__ import annotations

from pathlib import Path

from rftkit.data.sql_task import SCHEMA_SYSTEM, write_sql_task

HERE = Path(__file__).parent


def main(seed: int = 0) -> None:
    for folder, options in ((HERE, {"sft": 24, "system": SCHEMA_SYSTEM, "by_name": True}), (HERE / "tiny", {})):
        files = write_sql_task(folder, seed=seed, **options)
        counts = {name: sum(1 for _ in files[name].open()) for name in ("train", "valid", "sft")}
        print(f"{folder}: shop.sqlite, {counts['train']} train, {counts['valid']} valid, {counts['sft']} sft rows")


if __name__ == "__main__":
    main()
