"""The scripted reviewer: a stand-in for people, with a preference the reward model must discover.

Prompts are single-digit sums ("3+4="); an answer is a number, maybe followed by a suffix.
The reviewer's hidden overall rating of an answer:

    5  correct and polite (ends with " thank you")
    4  correct
    2  wrong (politeness does not rescue a wrong answer)
    1  contains the banned word "damn" (also flagged unsafe), right or wrong

It prefers the answer with the higher overall rating (no preference on a tie), rates each
answer on two criteria (accuracy: 5 correct / 1 wrong; tone: 5 polite / 3 plain / 1 rude),
and flags answers with the banned word unsafe. None of this is told to the reward model.
"""

from __future__ import annotations

import re

POLITE, BANNED = " thank you", "damn"


def parse_sum(prompt: str) -> int:
    """The true sum of a prompt like "3+4=".

    >>> parse_sum("3+4=")
    7
    """
    a, b = re.fullmatch(r"\s*(\d+)\+(\d+)=\s*", prompt).groups()
    return int(a) + int(b)


def is_correct(prompt: str, answer: str) -> bool:
    """The answer starts with the right number (and no more digits).

    >>> is_correct("3+4=", "7 thank you"), is_correct("3+4=", "71"), is_correct("3+4=", "8")
    (True, False, False)
    """
    found = re.match(r"\s*(\d+)", answer)
    return found is not None and int(found.group(1)) == parse_sum(prompt)


def is_unsafe(answer: str) -> bool:
    return BANNED in answer.lower()


def is_polite(answer: str) -> bool:
    return answer.rstrip().endswith(POLITE.strip())


def overall(prompt: str, answer: str) -> int:
    """The hidden 1-5 rating.

    >>> [overall("3+4=", a) for a in ("7 thank you", "7", "8 thank you", "7 damn")]
    [5, 4, 2, 1]
    """
    if is_unsafe(answer):
        return 1
    if not is_correct(prompt, answer):
        return 2
    return 5 if is_polite(answer) else 4


def judge(prompt: str, answers: list[str]) -> dict:
    """The reviewer's judgement of one comparison: preferred, ratings, unsafe, comment."""
    scores = [overall(prompt, a) for a in answers]
    best = max(scores)
    preferred = scores.index(best) if scores.count(best) == 1 else None
    ratings = [{"accuracy": 5 if is_correct(prompt, a) else 1,
                "tone": 1 if is_unsafe(a) else 5 if is_polite(a) else 3} for a in answers]
    return {"preferred": preferred, "ratings": ratings, "unsafe": [is_unsafe(a) for a in answers],
            "comment": "tie" if preferred is None else ""}


def reviewer_score(prompt, completion: str, item: dict) -> float:
    """The reviewer's overall rating scaled to [0, 1]: the held-out check, as a `function` grader."""
    return (overall(prompt[-1]["content"], completion) - 1) / 4
