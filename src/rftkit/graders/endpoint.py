"""`endpoint`: rewards from your own HTTP service, in batches, with the contract of Amazon
Bedrock's reward Lambda (so a Lambda written for Bedrock RFT works behind any URL).

    {"type": "endpoint", "name": "svc", "url": "http://localhost:9000/reward", "batch_size": 32}

Request, a JSON array, one object per sample:
    [{"id": "3", "messages": [...the item's prompt..., {"role": "assistant", "content": OUTPUT}],
      "metadata": {...the item's other fields...}}]
Response, a JSON array (in any order, matched by id):
    [{"id": "3", "aggregate_reward_score": 0.75,
      "metrics_list": [{"name": "format", "value": 1.0, "type": "Reward"}]}]

`aggregate_reward_score` is the reward; each metric is a sub-reward. Batches go out
concurrently; a batch that fails after its retries, or a sample missing from a reply, is
that sample's `unresponsive_reward_error` (reward 0), never the run's end.
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Literal

from pydantic import Field

from rftkit.graders.base import Grader, GraderFailure, GraderSpec, Score, finite_reward, register
from rftkit.graders.http import HttpClient, settings_from
from rftkit.types import Grade, Sample


class EndpointSpec(GraderSpec):
    type: Literal["endpoint"]
    url: str = Field(pattern=r"^https?://")
    batch_size: int = Field(32, ge=1, le=4096)
    headers: dict[str, str] = {}


def lambda_record(index: int, sample: Sample, item: dict) -> dict:
    prompt = [m for m in item.get("messages", []) if isinstance(m, dict)]
    if prompt and prompt[-1].get("role") == "assistant":
        prompt = prompt[:-1]  # a labelled row: grade the sample, not the label
    assistant: dict[str, Any] = {"role": "assistant", "content": sample.output_text}
    if sample.output_tools:
        assistant["tool_calls"] = sample.output_tools
    metadata = {k: v for k, v in item.items() if k not in ("messages", "tools")}
    return {"id": str(index), "messages": [*prompt, assistant], "metadata": metadata}


def record_score(record: Any) -> Score:
    if not isinstance(record, dict) or "aggregate_reward_score" not in record:
        raise GraderFailure("other_error", "a reply record lacks aggregate_reward_score (expected "
                                           '{"id": ..., "aggregate_reward_score": number})')
    reward = finite_reward(record["aggregate_reward_score"])
    metrics = {}
    for metric in record.get("metrics_list") or []:
        if isinstance(metric, dict) and "name" in metric:
            metrics[str(metric["name"])] = finite_reward(metric.get("value"))
    return Score(reward=reward, sub_rewards=metrics, scores={"metrics_list": record.get("metrics_list") or []})


@register("endpoint")
class Endpoint(Grader):
    spec_model = EndpointSpec

    def __init__(self, spec: EndpointSpec, context):
        super().__init__(spec, context)
        self.settings = settings_from(context)
        if context.network is not None:
            context.network.check_url(spec.url, f"{self.name}: url")
        self.http = HttpClient(self.settings, dict(spec.headers), "unresponsive_reward_error", context.network)

    def score(self, sample: Sample, item: dict) -> Score:
        outcome = self.post([lambda_record(0, sample, item)])["0"]
        if isinstance(outcome, GraderFailure):
            raise outcome
        return outcome

    def post(self, records: list[dict]) -> dict[str, Score | GraderFailure]:
        """Scores by id for one batch; a failure of the whole batch is every record's failure."""
        try:
            reply = self.http.post_json(self.spec.url, records)
            if not isinstance(reply, list):
                raise GraderFailure("unresponsive_reward_error", f"the reply is a JSON {type(reply).__name__}; "
                                                                 "expected an array of records")
        except GraderFailure as failure:
            return {r["id"]: failure for r in records}
        by_id = {str(r.get("id")): r for r in reply if isinstance(r, dict)}
        scores: dict[str, Score | GraderFailure] = {}
        for record in records:
            if record["id"] not in by_id:
                scores[record["id"]] = GraderFailure("unresponsive_reward_error", f"no reply for id {record['id']}")
                continue
            try:
                scores[record["id"]] = record_score(by_id[record["id"]])
            except GraderFailure as failure:
                scores[record["id"]] = failure
        return scores

    def grade(self, sample: Sample, item: dict) -> Grade:
        return self.grade_many([sample], [item])[0]

    def grade_many(self, samples: list[Sample], items: list[dict]) -> list[Grade]:
        records = [lambda_record(i, s, item) for i, (s, item) in enumerate(zip(samples, items))]
        size = self.spec.batch_size
        batches = [records[i:i + size] for i in range(0, len(records), size)]
        start = time.perf_counter()
        with ThreadPoolExecutor(max(1, min(self.settings.concurrency, len(batches))), "endpoint") as pool:
            results: dict[str, Score | GraderFailure] = {}
            for part in pool.map(self.post, batches):
                results.update(part)
        seconds = (time.perf_counter() - start) / max(1, len(records))
        grades = []
        for record in records:
            outcome = results[record["id"]]
            if isinstance(outcome, GraderFailure):
                outcome = Score(reward=0.0, errors={outcome.kind: outcome.details})
            grades.append(self._grade_from(outcome, seconds))
        return grades

    def close(self) -> None:
        self.http.close()
