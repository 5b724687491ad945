"""JSONL, parquet and saved Hugging Face datasets load to the same examples."""

import datasets
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from helpers import assistant, user, write_jsonl
from rftkit.data.validate import check_dataset, load_examples
from rftkit.errors import RftkitError

# Arrow builders infer a schema from the first row, so every row names every column; nulls
# (and keys Arrow fills with null) are dropped by every loader alike.
ROWS = [
    {"messages": [{"role": "system", "content": "be brief"}, user("3+4=")], "answer": "7",
     "meta": {"level": 1, "tags": None}, "tools": None},
    {"messages": [user("10+5=")], "answer": "15", "meta": {"level": 2, "tags": ["x"]}, "tools": None},
    {"messages": [user("call f"), {"role": "assistant", "content": "", "tool_calls": [
        {"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{}"}}]},
        {"role": "tool", "content": "42", "tool_call_id": "c1"}, user("so?")],
     "answer": "42", "meta": {"level": 3, "tags": []}, "tools": [{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}]},
]


def as_tuples(examples):
    return [(e.messages, e.tools, e.item, e.line) for e in examples]


@pytest.fixture
def three_formats(tmp_path):
    jsonl = write_jsonl(tmp_path / "d.jsonl", ROWS)
    parquet = tmp_path / "d.parquet"
    datasets.Dataset.from_list(ROWS).to_parquet(str(parquet))  # infers the schema from every row
    hf_dir = tmp_path / "hf"
    datasets.Dataset.from_list(ROWS).save_to_disk(str(hf_dir))
    return jsonl, parquet, hf_dir


def test_loaders_agree(three_formats):
    jsonl, parquet, hf_dir = three_formats
    reference = as_tuples(load_examples(jsonl, "reinforcement"))
    assert len(reference) == 3
    assert as_tuples(load_examples(parquet, "reinforcement")) == reference
    assert as_tuples(load_examples(hf_dir, "reinforcement")) == reference


def test_dataset_dict_with_one_split_and_with_several(tmp_path):
    rows = [{"messages": [user("a"), assistant("b")]}]
    single = tmp_path / "single"
    datasets.DatasetDict({"train": datasets.Dataset.from_list(rows)}).save_to_disk(str(single))
    assert load_examples(single, "supervised")[0].target == "b"
    several = tmp_path / "several"
    datasets.DatasetDict({"train": datasets.Dataset.from_list(rows), "test": datasets.Dataset.from_list(rows)}).save_to_disk(str(several))
    with pytest.raises(RftkitError, match="several splits"):
        load_examples(several, "supervised")
    assert load_examples(several / "test", "supervised")[0].target == "b"


def test_row_numbers_for_columnar_formats(tmp_path):
    rows = [{"messages": [user("a")]}, {"messages": [{"role": "bot", "content": "x"}]}]
    parquet = tmp_path / "d.parquet"
    pq.write_table(pa.Table.from_pylist(rows), parquet)
    (problem,) = check_dataset(parquet, "reinforcement").problems
    assert problem.line == 2 and problem.field == "messages[0].role"


def test_a_plain_directory_is_refused(tmp_path):
    with pytest.raises(RftkitError, match="not a saved Hugging Face dataset"):
        load_examples(tmp_path, "reinforcement")
