"""text_similarity: every metric against values worked out by hand (n-gram counts written out),
METEOR with offline WordNet, cosine with a local model and without one."""

import math

import pytest

from rftkit.errors import RftkitError
from rftkit.graders import GraderContext, build_grader
from rftkit.graders.text_metrics import DEBIAN_WORDNET
from rftkit.types import Sample

HYP = "the cat sat on the mat"
REF = "the cat sat on a mat"
# n-grams of HYP found in REF: 1-grams 5/6 (one "the" too many), 2-grams 3/5 (the cat, cat sat,
# sat on), 3-grams 2/4, 4-grams 1/3, 5-grams 0/2.
BY_HAND = {
    "bleu": (5 / 6 * 3 / 5 * 2 / 4 * 1 / 3) ** 0.25,  # geometric mean, no brevity penalty (same length)
    "gleu": (5 + 3 + 2 + 1) / 18,  # matches over all 1..4-grams, precision == recall here
    "rouge_1": 5 / 6, "rouge_2": 3 / 5, "rouge_3": 2 / 4, "rouge_4": 1 / 3, "rouge_5": 0.0,
    "rouge_l": 5 / 6,  # LCS "the cat sat on mat" = 5 of 6 tokens each side
    # WRatio: the best of ratio (1 - 3/42: "the"->"a" is 3 indel edits over 21+21 characters) and
    # 0.95 x token_set_ratio (100: HYP's words are a subset of REF's).
    "fuzzy_match": max(1 - 3 / 42, 0.95),
}


def similarity(metric, context=None, **extra):
    return build_grader({"type": "text_similarity", "name": "sim", "input": "{{ sample.output_text }}",
                         "reference": "{{ item.ref }}", "evaluation_metric": metric, **extra}, context)


@pytest.mark.parametrize("metric", sorted(BY_HAND))
def test_metric_by_hand(metric):
    grade = similarity(metric).grade(Sample(HYP), {"ref": REF})
    assert math.isclose(grade.reward, BY_HAND[metric], abs_tol=1e-6), (metric, grade.reward)
    assert grade.metadata["scores"][metric] == grade.reward


@pytest.mark.parametrize("metric", sorted(BY_HAND))
def test_identical_texts_score_one(metric):
    assert math.isclose(similarity(metric).grade(Sample(REF), {"ref": REF}).reward, 1.0)


def test_fuzzy_match_plain_edit_ratio():
    # "abcd" vs "abcf": delete d, insert f = 2 indel edits over 4+4 characters.
    assert math.isclose(similarity("fuzzy_match").grade(Sample("abcd"), {"ref": "abcf"}).reward, 1 - 2 / 8)


def test_pass_threshold_is_reported_and_reward_stays_the_score():
    grade = similarity("rouge_1", pass_threshold=0.9).grade(Sample(HYP), {"ref": REF})
    assert math.isclose(grade.reward, 5 / 6) and grade.metadata["scores"]["passed"] is False


needs_wordnet = pytest.mark.skipif(not (DEBIAN_WORDNET / "data.noun").exists(),
                                   reason="WordNet not installed (apt-get install wordnet-base; .ci/run does)")


@needs_wordnet
def test_meteor_by_hand_exact_and_synonym():
    # Identical 3 words: P = R = 1, one chunk of 3 matches -> penalty 0.5 * (1/3)^3.
    assert math.isclose(similarity("meteor").grade(Sample("the cat sat"), {"ref": "the cat sat"}).reward,
                        1 - 0.5 / 27)
    # "hound" matches "dog" only through WordNet synonyms: 1 match, 1 chunk -> penalty 0.5.
    assert math.isclose(similarity("meteor").grade(Sample("hound"), {"ref": "dog"}).reward, 0.5)
    assert similarity("meteor").grade(Sample("cat"), {"ref": "dog"}).reward == 0.0


def test_cosine_without_a_model_says_how_to_configure_one(monkeypatch):
    monkeypatch.delenv("RFTKIT_EMBEDDING_MODEL", raising=False)
    with pytest.raises(RftkitError, match="RFTKIT_EMBEDDING_MODEL"):
        similarity("cosine")


def test_cosine_with_a_local_model(tiny_dir):
    import torch
    from transformers import AutoModel, AutoTokenizer

    grader = similarity("cosine", GraderContext(embedding_model=str(tiny_dir)))
    assert math.isclose(grader.grade(Sample("abc"), {"ref": "abc"}).reward, 1.0, rel_tol=1e-5)
    tokenizer, model = AutoTokenizer.from_pretrained(tiny_dir), AutoModel.from_pretrained(tiny_dir).eval()
    with torch.no_grad():  # mean of the last hidden states, each text alone (no padding involved)
        a, b = (model(**tokenizer(t, return_tensors="pt")).last_hidden_state.mean(1) for t in ("12+7", "9+30"))
    expected = torch.nn.functional.cosine_similarity(a, b).item()
    assert math.isclose(grader.grade(Sample("12+7"), {"ref": "9+30"}).reward, expected, rel_tol=1e-4)


def test_meteor_without_wordnet_says_how_to_install_it(monkeypatch, tmp_path):
    from rftkit.graders import text_metrics

    monkeypatch.setattr(text_metrics, "DEBIAN_WORDNET", tmp_path)  # an empty folder: no database
    monkeypatch.setattr(text_metrics, "_nltk_wordnet", lambda: (_ for _ in ()).throw(LookupError("none")))
    text_metrics.load_wordnet.cache_clear()
    try:
        with pytest.raises(RftkitError, match="apt-get install wordnet-base"):
            similarity("meteor")
    finally:
        text_metrics.load_wordnet.cache_clear()
