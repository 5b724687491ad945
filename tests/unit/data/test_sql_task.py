"""The built-in NL->SQL task: the same files for the same seed, held-out questions disjoint from
training, every reference query runs and returns rows, and the grader scores what it should."""

import json
import sqlite3

import pytest

from rftkit.data.sql_task import BY_NAME_TEMPLATES, TEMPLATES, sql_grader, write_sql_task
from rftkit.data.validate import check_dataset
from rftkit.graders import build_grader
from rftkit.types import Sample


@pytest.fixture(scope="module", params=[False, True], ids=["tiny-model questions", "by name too"])
def task(request, tmp_path_factory):
    files = write_sql_task(tmp_path_factory.mktemp("sql"), seed=0, by_name=request.param)
    return dict(files, by_name=request.param)


def rows(path):
    return [json.loads(line) for line in path.open()]


def test_the_same_seed_writes_the_same_files_and_another_seed_others(task, tmp_path):
    again = write_sql_task(tmp_path / "again", seed=0, by_name=task["by_name"])
    for name in ("train", "valid", "sft"):
        assert again[name].read_text() == task[name].read_text()
    dump = [list(sqlite3.connect(files["database"]).iterdump()) for files in (task, again)]
    assert dump[0] == dump[1]
    other = write_sql_task(tmp_path / "other", seed=1, by_name=task["by_name"])
    assert other["valid"].read_text() != task["valid"].read_text()


def test_files_are_valid_and_held_out_questions_are_disjoint_combinations(task):
    for name, purpose in (("train", "reinforcement"), ("valid", "reinforcement"), ("sft", "supervised")):
        checked = check_dataset(task[name], purpose)
        assert not checked.problems, checked.problems[:3]
    train, valid, sft = (rows(task[name]) for name in ("train", "valid", "sft"))
    # the reference query names the template and its values: no phrasing of a held-out one is trained on
    queries = {name: {r["reference_sql"] for r in data} for name, data in (("train", train), ("valid", valid), ("sft", sft))}
    assert not queries["valid"] & (queries["train"] | queries["sft"])
    assert len(valid) == len(queries["valid"]) >= 60 and len(train) >= 5 * len(valid)
    # a held-out question puts a trained-on value into a trained-on template, in a new combination
    trained_sql = " ".join(r["reference_sql"] for r in train)
    trained_templates = {r["template"] for r in train}
    for row in valid:
        assert row["template"] in trained_templates
        for value in _quoted_values(row["reference_sql"]):
            assert value in trained_sql, (value, row)
    asked = TEMPLATES + (BY_NAME_TEMPLATES if task["by_name"] else [])
    assert {r["template"] for r in train} == {t.name for t in asked}
    assert {r["template"] for r in valid} == {t.name for t in asked}


def _quoted_values(sql: str) -> list[str]:
    return sql.split("'")[1::2]


def test_every_reference_query_runs_and_returns_rows(task):
    db = sqlite3.connect(task["database"])
    for row in rows(task["train"]) + rows(task["valid"]):
        result = db.execute(row["reference_sql"]).fetchall()
        assert result and all(v is not None for r in result for v in r), row


def test_sft_rows_answer_with_the_reference_and_prompts_carry_no_schema(task):
    for row in rows(task["sft"]):
        assert [m["role"] for m in row["messages"]] == ["user", "assistant"]
        assert row["messages"][-1]["content"] == row["reference_sql"]


def test_the_grader_gives_exact_sets_1_and_overlapping_sets_partial_credit(task):
    item = next(r for r in rows(task["train"]) if r["template"] == "city_names")
    city = _quoted_values(item["reference_sql"])[0]
    with build_grader(sql_grader(task["database"])) as grader:
        assert grader.grade(Sample(item["reference_sql"]), item).reward == 1.0
        rewritten = f"SELECT c.name FROM customers AS c WHERE c.city = '{city}';"
        assert grader.grade(Sample(rewritten), item).reward == 1.0
        everyone = grader.grade(Sample("SELECT name FROM customers"), item).reward
        assert 0 < everyone < 1
        assert grader.grade(Sample("SELECT nme FROM customers"), item).reward == 0.0
