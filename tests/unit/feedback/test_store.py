"""The feedback store: items, judgements, validation errors, JSONL in and out, samples."""

import pytest

from helpers import write_jsonl
from rftkit.errors import RftkitError
from rftkit.feedback import Answer, ComparisonItem, FeedbackStore, Judgement, read_feedback_jsonl
from rftkit.feedback.samples import item_from_sample_lines, items_from_rows, items_from_samples, read_items_jsonl

PROMPT = [{"role": "user", "content": "3+4="}]


@pytest.fixture
def store(tmp_path):
    store = FeedbackStore(f"sqlite:///{tmp_path / 'feedback.db'}", criteria=["accuracy", "safety"])
    store.add_items([ComparisonItem("q1", PROMPT, [Answer("7"), Answer("8")]),
                     ComparisonItem("q2", PROMPT, [Answer("7 thanks"), Answer("7"), Answer("seven")])])
    return store


def test_a_judgement_round_trips_with_who_when_and_what(store):
    judgement_id = store.record_judgement(Judgement("q1", "ann", preferred=0, ratings=[{"accuracy": 5}, {"accuracy": 1}],
                                                    unsafe=[False, False], comment="8 is wrong"))
    [stored] = store.judgements(item_id="q1")
    assert stored.judgement_id == judgement_id and stored.reviewer == "ann" and stored.preferred == 0
    assert stored.ratings == [{"accuracy": 5}, {"accuracy": 1}] and stored.comment == "8 is wrong"
    assert stored.source == "human" and stored.created_at.startswith("20")
    assert [i.item_id for i in store.items(pending_for="ann")] == ["q2"]
    assert [i.item_id for i in store.items(pending_for="bob")] == ["q1", "q2"]


@pytest.mark.parametrize("judgement, message", [
    (Judgement("nope", "ann", preferred=0), "item_id: unknown item 'nope'"),
    (Judgement("q1", "ann", preferred=2), "preferred: answer 2 does not exist (the item has answers 0-1)"),
    (Judgement("q1", "ann", ratings=[{"accuracy": 6}, {"accuracy": 1}]), "ratings[0].accuracy: 6 is out of range 1-5"),
    (Judgement("q1", "ann", ratings=[{"accuracy": 0}, {"accuracy": 1}]), "ratings[0].accuracy: 0 is out of range 1-5"),
    (Judgement("q1", "ann", ratings=[{}, {"tone": 3}]), "ratings[1].tone: unknown criterion (known: accuracy, safety)"),
    (Judgement("q1", "ann", unsafe=[True]), "unsafe: 1 entries for 2 answers"),
    (Judgement("q1", " ", preferred=0), "reviewer: must not be empty"),
])
def test_bad_judgements_are_refused_naming_the_field(store, judgement, message):
    with pytest.raises(RftkitError, match=None) as err:
        store.record_judgement(judgement)
    assert message in str(err.value)
    assert store.judgements() == []


def test_items_need_two_answers_and_new_ids(store):
    with pytest.raises(RftkitError, match="answers: 1 given, a comparison needs at least 2"):
        store.add_items([ComparisonItem("q3", PROMPT, [Answer("7")])])
    with pytest.raises(RftkitError, match="items already in the store: q1"):
        store.add_items([ComparisonItem("q1", PROMPT, [Answer("7"), Answer("9")])])


def test_import_names_every_bad_line_and_imports_nothing(store, tmp_path):
    good = {"item_id": "q1", "reviewer": "ann", "preferred": 0}
    path = write_jsonl(tmp_path / "in.jsonl", [
        good,
        {"item_id": "zz", "reviewer": "ann", "preferred": 0},
        {"item_id": "q1", "reviewer": "ann", "ratings": [{"accuracy": 9}, {"accuracy": 1}]},
        {"item_id": "q1", "reviewer": "ann", "ratings": [{"tone": 3}, {}]},
        "{not json",
        {"item_id": "q1", "reviewer": "ann", "colour": "red"},
    ])
    with pytest.raises(RftkitError) as err:
        store.import_jsonl(path)
    text = str(err.value)
    assert f"{path}:2: item_id: unknown item 'zz'" in text
    assert f"{path}:3: ratings[0].accuracy: 9 is out of range 1-5" in text
    assert f"{path}:4: ratings[0].tone: unknown criterion" in text
    assert f"{path}:5: invalid JSON" in text
    assert f"{path}:6: colour: unknown key" in text
    assert ":1:" not in text and "nothing was imported" in text
    assert store.judgements() == []


def test_export_then_import_into_a_fresh_store_gives_the_same_records(store, tmp_path):
    store.record_judgement(Judgement("q1", "ann", preferred=0, ratings=[{"accuracy": 5}, {"accuracy": 1}]))
    store.record_judgement(Judgement("q2", "bob", preferred=None, unsafe=[False, False, True], comment="tie"))
    assert store.export_jsonl(tmp_path / "out.jsonl") == 2
    fresh = FeedbackStore(f"sqlite:///{tmp_path / 'fresh.db'}", criteria=["accuracy"])
    assert fresh.import_jsonl(tmp_path / "out.jsonl") == 2
    strip = lambda r: (r.item.item_id, r.item.prompt, r.item.answers, r.judgement.reviewer, r.judgement.preferred,  # noqa: E731
                       r.judgement.ratings, r.judgement.unsafe, r.judgement.comment, r.judgement.created_at)
    assert [strip(r) for r in fresh.records()] == [strip(r) for r in store.records()]
    assert [strip(r) for r in read_feedback_jsonl(tmp_path / "out.jsonl")] == [strip(r) for r in store.records()]


def test_a_feedback_file_must_be_self_contained_and_valid(tmp_path):
    path = write_jsonl(tmp_path / "f.jsonl", [
        {"item_id": "q1", "reviewer": "ann", "preferred": 0},
        {"prompt": "1+1=", "answers": ["2"], "reviewer": "ann"},
        {"prompt": "1+1=", "answers": ["2", "3"], "reviewer": "ann", "preferred": 1, "ratings": [{"x": 5}, {"x": "5"}]},
    ])
    with pytest.raises(RftkitError) as err:
        read_feedback_jsonl(path)
    text = str(err.value)
    assert f"{path}:1: prompt, answers: required in a feedback file" in text
    assert f"{path}:2: answers: 1 given, a comparison needs at least 2" in text
    assert f"{path}:3: ratings[1].x: '5' is out of range 1-5" in text


def test_prelabels_are_confirmed_or_corrected_and_agreement_is_measured(store):
    first = store.record_judgement(Judgement("q1", "judge:j", preferred=0, source="ai", status="prelabel"))
    second = store.record_judgement(Judgement("q2", "judge:j", preferred=0, source="ai", status="prelabel"))
    store.confirm(first, "ann")
    store.confirm(second, "ann", preferred=1, comment="the plain one")
    store.record_judgement(Judgement("q1", "bob", preferred=1))
    assert [j.preferred for j in store.judgements(source="human")] == [0, 1, 1]
    assert store.judgements(source="human")[1].based_on == second
    report = store.agreement()
    assert report["judge_vs_human"]["pairs"] == 3  # q1: ann, bob; q2: ann
    assert report["judge_vs_human"]["preference_agreement"] == pytest.approx(1 / 3)
    assert report["judge_vs_human"]["confirmed_unchanged"] == 1 and report["judge_vs_human"]["corrected"] == 1
    assert report["reviewers"]["pairs"] == 1 and report["reviewers"]["preference_agreement"] == 0.0
    assert len(store.records()) == 3 and len(store.records(include_ai=True)) == 3  # pre-labels never train
    with pytest.raises(RftkitError, match="is not a pre-label"):
        store.confirm(store.judgements(source="human")[0].judgement_id, "ann")


def samples_file(tmp_path):
    rows = [{"step": 1, "split": "train", "line": 1, "prompt": PROMPT, "sample": i, "completion": c, "reward": 0.0}
            for i, c in enumerate(["7", "8", "7", "7 thanks"])]
    rows += [{"step": 1, "split": "train", "line": 2, "prompt": [{"role": "user", "content": "1+1="}], "sample": 0,
              "completion": "2", "reward": 1.0}]
    return write_jsonl(tmp_path / "samples.jsonl", rows)


def test_items_from_a_runs_samples_keep_distinct_answers_and_their_lines(tmp_path):
    [item] = items_from_samples(samples_file(tmp_path))  # the 1+1 group has one answer: no comparison
    assert [a.text for a in item.answers] == ["7", "8", "7 thanks"]
    assert [a.sample_ref.rsplit(":", 1)[1] for a in item.answers] == ["1", "2", "4"]


def test_items_from_chosen_sample_lines_refuse_unknown_ones(tmp_path):
    path = samples_file(tmp_path)
    assert [a.text for a in item_from_sample_lines(path, [1, 4]).answers] == ["7", "7 thanks"]
    with pytest.raises(RftkitError, match=r"unknown sample line\(s\) 9, 12 \(the file has sample rows at lines 1-5\)"):
        item_from_sample_lines(path, [1, 9, 12])
    with pytest.raises(RftkitError, match="answer different prompts"):
        item_from_sample_lines(path, [1, 5])


def test_uploaded_items_file(tmp_path):
    path = write_jsonl(tmp_path / "items.jsonl", [{"prompt": "hi", "answers": ["a", {"text": "b"}]},
                                                  {"prompt": "hi", "answers": ["a"]}, {"answers": ["a", "b"]}])
    with pytest.raises(RftkitError) as err:
        read_items_jsonl(path)
    assert f"{path}:2: answers: 1 given" in str(err.value) and f"{path}:3: prompt: Field required" in str(err.value)


def test_projects_sharing_a_database_see_only_their_own_feedback(store):
    other = FeedbackStore(store.engine, criteria=["tone"], project="beta")
    assert other.items() == [] and other.criteria() == ["tone"] and store.criteria() == ["accuracy", "safety"]
    other.add_items([ComparisonItem("q1", PROMPT, [Answer("x"), Answer("y")])])  # the same id, another project
    with pytest.raises(RftkitError, match="item_id: unknown item 'q2'"):
        other.record_judgement(Judgement("q2", "ann", preferred=0))
    other.record_judgement(Judgement("q1", "ann", preferred=1))
    assert store.judgements() == [] and [a.text for a in store.get_item("q1").answers] == ["7", "8"]
    label = store.record_judgement(Judgement("q1", "judge:j", preferred=0, source="ai", status="prelabel"))
    with pytest.raises(RftkitError, match=f"judgement {label}: unknown judgement"):
        other.confirm(label, "ann")


def test_adding_items_again_can_skip_those_stored_and_pages_follow_a_cursor(store):
    new = ComparisonItem("q3", PROMPT, [Answer("a"), Answer("b")])
    assert store.add_items([ComparisonItem("q1", PROMPT, [Answer("7"), Answer("8")]), new], skip_existing=True) == ["q3"]
    with pytest.raises(RftkitError, match="item q4: given more than once"):
        store.add_items([ComparisonItem("q4", PROMPT, [Answer("a"), Answer("b")])] * 2)
    assert [i.item_id for i in store.items(limit=2)] == ["q1", "q2"]
    assert [i.item_id for i in store.items(after="q2")] == ["q3"]


def test_items_without_ids_get_ids_from_their_content_so_adding_them_again_changes_nothing(store, tmp_path):
    rows = [{"prompt": "3+4=", "answers": ["7", "8"]}, {"prompt": PROMPT, "answers": ["7", {"text": "8"}]},
            {"prompt": "3+4=", "answers": ["8", "7"]}, {"prompt": "1+1=", "answers": ["7", "8"]}]
    first, same, swapped, other = items_from_rows(rows, "api")
    assert first.item_id == same.item_id and first.item_id.startswith("item-") and len(first.item_id) == 21
    assert len({first.item_id, swapped.item_id, other.item_id}) == 3
    [from_file] = read_items_jsonl(write_jsonl(tmp_path / "items.jsonl", rows[:1]))
    assert from_file.item_id == first.item_id  # a file and a body agree
    assert store.add_items([first, other]) == [first.item_id, other.item_id]
    assert store.add_items([same, swapped]) == [swapped.item_id]  # `same` is stored already: skipped, no error
    assert len(store.items()) == 5


@pytest.mark.parametrize("read", [read_items_jsonl, read_feedback_jsonl, items_from_samples,
                                  lambda path: FeedbackStore(path.parent / "f.db").import_jsonl(path)])
def test_a_file_that_is_not_utf8_is_named_with_its_line(tmp_path, read):
    path = tmp_path / "latin1.jsonl"
    path.write_bytes(b'{"prompt": "hi", "answers": ["a", "b"]}\n{"prompt": "caf\xe9", "answers": ["a", "b"]}\n')
    with pytest.raises(RftkitError, match=f"{path}:2: not UTF-8 text .* save the file as UTF-8"):
        read(path)


@pytest.mark.parametrize("answer, problem", [
    ({"text": "a", "sample_ref": 5}, "items[0].answers.0.sample_ref: Input should be a valid string"),
    ({"text": 5}, "items[0].answers.0.text: Input should be a valid string"),
    ({"sample_ref": "x:1"}, "items[0].answers.0.text: Field required"),
    ({"text": "a", "score": 1}, "items[0].answers.0.score: unknown key"),
    (5, "items[0].answers.0: Input should be a valid dictionary"),
])
def test_answers_are_strings_or_text_and_sample_ref_objects(answer, problem):
    with pytest.raises(RftkitError) as err:
        items_from_rows([{"prompt": "hi", "answers": [answer, "b"]}], "api")
    assert problem in str(err.value)
