"""`text_similarity`: how close the rendered input is to the reference (OpenAI's grader).

The reward is the metric's score in [0, 1] (text_metrics.py says which library computes
each). With `pass_threshold` set, the metadata's scores also say whether it passed, as in
OpenAI's evals; the reward stays the score, which is what RFT trains on. A metric that
cannot run here (cosine without an embedding model, meteor without WordNet) stops the
grader from being built, with the fix in the message.
"""

from __future__ import annotations

from typing import Literal

from rftkit.graders.base import Grader, GraderSpec, Score, register
from rftkit.graders.templates import render
from rftkit.types import Sample

Metric = Literal[
    "fuzzy_match", "bleu", "gleu", "meteor",
    "rouge_1", "rouge_2", "rouge_3", "rouge_4", "rouge_5", "rouge_l", "cosine",
]


class TextSimilaritySpec(GraderSpec):
    type: Literal["text_similarity"]
    input: str
    reference: str
    evaluation_metric: Metric
    pass_threshold: float | None = None


@register("text_similarity")
class TextSimilarity(Grader):
    spec_model = TextSimilaritySpec

    def __init__(self, spec: TextSimilaritySpec, context):
        super().__init__(spec, context)
        if spec.evaluation_metric == "cosine":
            from rftkit.graders.embeddings import configured_model, embedder

            self.metric = embedder(configured_model(context.embedding_model)).cosine
        else:
            from rftkit.graders.text_metrics import METRICS, load_wordnet

            if spec.evaluation_metric == "meteor":
                load_wordnet()  # fail now, with the fix, rather than on every sample
            self.metric = METRICS[spec.evaluation_metric]

    def score(self, sample: Sample, item: dict) -> Score:
        text = render(self.spec.input, sample, item)
        reference = render(self.spec.reference, sample, item)
        value = self.metric(text, reference)
        scores: dict = {self.spec.evaluation_metric: value}
        if self.spec.pass_threshold is not None:
            scores["passed"] = value >= self.spec.pass_threshold
        return Score(reward=value, scores=scores)
