"""The metrics of `text_similarity`, each computed by its field's reference library.

Every function maps (input, reference) to a score in [0, 1]:

- fuzzy_match: rapidfuzz `fuzz.WRatio` / 100 (OpenAI says "rapidfuzz" without naming the
  scorer; WRatio is rapidfuzz's recommended general-purpose one).
- bleu: sacrebleu `sentence_bleu` (13a tokenizer, exponential smoothing) / 100.
- gleu: nltk `sentence_gleu` (Google BLEU, n-grams 1..4) over whitespace tokens.
- meteor: nltk `meteor_score` over lower-cased whitespace tokens, with WordNet synonyms.
- rouge_1 .. rouge_5, rouge_l: rouge-score's F-measure (its default tokenizer, no stemmer).

METEOR needs the WordNet 3.0 database, which nltk normally downloads. Offline, rftkit reads
the same database from Debian's `wordnet-base` package (/usr/share/wordnet), which lacks only
the small `lexnames` index nltk insists on; it is supplied below, from the WordNet 3.0
lexnames(5WN) manual. Scores are identical to nltk with its downloaded `wordnet` corpus.
"""

from __future__ import annotations

import io
import threading
import warnings
from functools import lru_cache
from pathlib import Path
from typing import Any, Callable

from rftkit.errors import RftkitError

DEBIAN_WORDNET = Path("/usr/share/wordnet")
# WordNet 3.0's lexicographer files: number, name, syntactic category (lexnames(5WN)).
LEXNAMES = (
    "adj.all adj.pert adv.all noun.Tops noun.act noun.animal noun.artifact noun.attribute noun.body "
    "noun.cognition noun.communication noun.event noun.feeling noun.food noun.group noun.location "
    "noun.motive noun.object noun.person noun.phenomenon noun.plant noun.possession noun.process "
    "noun.quantity noun.relation noun.shape noun.state noun.substance noun.time verb.body verb.change "
    "verb.cognition verb.communication verb.competition verb.consumption verb.contact verb.creation "
    "verb.emotion verb.motion verb.perception verb.possession verb.social verb.stative verb.weather adj.ppl"
).split()
CATEGORY = {"noun": 1, "verb": 2, "adj": 3, "adv": 4}
_lock = threading.Lock()  # nltk's WordNet reader loads lazily and is not thread-safe while it does


def fuzzy_match(text: str, reference: str) -> float:
    """
    >>> fuzzy_match("hello world", "hello world")
    1.0
    """
    from rapidfuzz import fuzz

    return fuzz.WRatio(text, reference) / 100.0


def bleu(text: str, reference: str) -> float:
    import sacrebleu

    return sacrebleu.sentence_bleu(text, [reference]).score / 100.0


def gleu(text: str, reference: str) -> float:
    from nltk.translate.gleu_score import sentence_gleu

    return float(sentence_gleu([reference.split()], text.split()))


def meteor(text: str, reference: str) -> float:
    from nltk.translate.meteor_score import meteor_score

    wordnet = load_wordnet()
    with _lock:
        return float(meteor_score([reference.lower().split()], text.lower().split(), wordnet=wordnet))


@lru_cache(maxsize=1)
def _rouge_scorer():
    from rouge_score import rouge_scorer

    return rouge_scorer.RougeScorer([f"rouge{n}" for n in range(1, 6)] + ["rougeL"], use_stemmer=False)


def rouge(kind: str) -> Callable[[str, str], float]:
    key = "rougeL" if kind == "l" else f"rouge{kind}"

    def score(text: str, reference: str) -> float:
        return float(_rouge_scorer().score(reference, text)[key].fmeasure)

    return score


def _nltk_wordnet() -> Any:
    """nltk's downloaded WordNet corpus; LookupError when it was never downloaded."""
    from nltk.corpus import wordnet

    wordnet.ensure_loaded()
    return wordnet


@lru_cache(maxsize=1)
def load_wordnet() -> Any:
    """nltk's WordNet: its downloaded corpus when present, else Debian's wordnet-base."""
    import nltk.data
    from nltk.corpus.reader.wordnet import WordNetCorpusReader

    try:
        return _nltk_wordnet()
    except LookupError:
        pass
    if not (DEBIAN_WORDNET / "data.noun").exists():
        raise RftkitError(
            "text_similarity: meteor needs the WordNet 3.0 database, and none is installed",
            fix="apt-get install wordnet-base (Debian/Ubuntu), or python -m nltk.downloader wordnet where online",
        )
    if str(DEBIAN_WORDNET) not in nltk.data.path:
        nltk.data.path.append(str(DEBIAN_WORDNET))  # nltk reads only from its data paths

    class DebianWordNet(WordNetCorpusReader):
        def open(self, fileid):  # Debian ships every file but the lexnames index
            if fileid == "lexnames":
                return io.StringIO("".join(
                    f"{i:02d}\t{name}\t{CATEGORY[name.split('.')[0]]}\n" for i, name in enumerate(LEXNAMES)))
            return super().open(fileid)

        def map_wn(self, version="wordnet"):  # this is WordNet 3.0 itself: nothing to map
            return None

        def get_version(self):
            return "3.0"

    with _lock, warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "multilingual functions are not available": not needed
        return DebianWordNet(str(DEBIAN_WORDNET), None)


METRICS: dict[str, Callable[[str, str], float]] = {
    "fuzzy_match": fuzzy_match,
    "bleu": bleu,
    "gleu": gleu,
    "meteor": meteor,
    **{f"rouge_{n}": rouge(str(n)) for n in range(1, 6)},
    "rouge_l": rouge("l"),
}
