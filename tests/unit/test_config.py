import pytest

from rftkit.config import JobSpec, load_job, parse_job
from rftkit.errors import RftkitError
from rftkit.resolved import resolve_reinforcement, resolve_supervised

GRADER = {"type": "string_check", "name": "g", "input": "{{ sample.output_text }}", "reference": "x", "operation": "eq"}


def rl_job(**hyperparameters):
    return {
        "model": "m",
        "training_file": "t.jsonl",
        "method": {"type": "reinforcement", "reinforcement": {"grader": GRADER, "hyperparameters": hyperparameters}},
    }


def test_openai_body_parses_with_defaults():
    spec = parse_job(rl_job(n_epochs=2, batch_size="auto"))
    assert spec.method.reinforcement.hyperparameters.n_epochs == 2
    assert spec.method.reinforcement.hyperparameters.batch_size == "auto"
    assert spec.rftkit.group_size == 8 and spec.rftkit.kl.estimator == "k3"


def test_spec_is_frozen():
    spec = parse_job(rl_job())
    with pytest.raises(Exception):
        spec.seed = 3


def test_unknown_keys_are_rejected_with_their_full_path_and_a_suggestion():
    body = rl_job(n_epoch=3)
    body["rftkit"] = {"lora": {"rank": 8}}
    with pytest.raises(RftkitError) as err:
        parse_job(body, "job.yaml")
    text = str(err.value)
    assert "job.yaml: method.reinforcement.hyperparameters.n_epoch: unknown key (did you mean 'n_epochs'?)" in text
    assert "job.yaml: rftkit.lora.rank: unknown key" in text


@pytest.mark.parametrize(
    "field, value, expected",
    [
        ("n_epochs", "x", 'expected an integer or "auto"'),
        ("n_epochs", 0, "must be >= 1"),
        ("n_epochs", 1.5, 'expected an integer or "auto"'),
        ("batch_size", True, 'expected an integer or "auto"'),
        ("learning_rate_multiplier", 0, "must be > 0"),
        ("learning_rate_multiplier", float("nan"), "must be > 0"),
    ],
)
def test_bad_numbers_name_the_field(field, value, expected):
    with pytest.raises(RftkitError) as err:
        parse_job(rl_job(**{field: value}))
    assert f"method.reinforcement.hyperparameters.{field}: {expected}" in str(err.value)


def test_reinforcement_needs_its_block_and_grader():
    with pytest.raises(RftkitError, match="method.reinforcement \\(with a grader\\) is required"):
        parse_job({"model": "m", "training_file": "t", "method": {"type": "reinforcement"}})
    with pytest.raises(RftkitError, match="method.reinforcement.grader is required"):
        parse_job({"model": "m", "training_file": "t", "method": {"type": "reinforcement", "reinforcement": {}}})
    # an environment whose reward() gives the reward needs no grader (checked when the class loads)
    spec = parse_job({"model": "m", "training_file": "t", "method": {"type": "reinforcement", "reinforcement": {}},
                      "rftkit": {"environment": {"factory": "env.py:Env"}}})
    assert spec.method.reinforcement.grader is None


def test_auto_resolution_for_a_dozen_prompts():
    spec = parse_job(rl_job())
    resolved = resolve_reinforcement(spec, rows=12, parameters=1_100_000, valid_rows=12)
    assert resolved.batch_size == 8
    assert resolved.n_epochs == 50  # 2 steps per epoch, aiming at auto_steps=100
    assert resolved.total_steps == 100
    assert resolved.eval_interval == 10
    assert resolved.learning_rate == pytest.approx(3e-5)  # the tiny preset's rate
    assert resolved.eval_samples == 6  # 12 validation prompts x 6 = 72 graded samples a pass
    assert resolved.group_size == 8
    assert set(resolved.reasons) == {"batch_size", "n_epochs", "learning_rate", "eval_interval", "eval_samples",
                                     "group_size"}
    assert "1.1M parameters" in resolved.reasons["learning_rate"]


def test_explicit_values_and_multipliers_win():
    body = rl_job(n_epochs=2, batch_size=4, learning_rate_multiplier=3, compute_multiplier=0.5, eval_interval=7)
    body["rftkit"] = {"learning_rate": 1e-4, "max_steps": 5}
    resolved = resolve_reinforcement(parse_job(body), rows=100, parameters=1_100_000)
    assert (resolved.n_epochs, resolved.batch_size, resolved.group_size) == (2, 4, 4)
    assert resolved.total_steps == 5
    assert resolved.learning_rate == pytest.approx(3e-4)  # 1e-4 x 3
    assert resolved.eval_interval == 7


def test_batch_never_exceeds_rows_and_empty_data_is_an_error():
    body = {"model": "m", "training_file": "t", "method": {"type": "supervised"}}
    spec = parse_job(body)
    assert resolve_supervised(spec, rows=3, parameters=None).batch_size == 3
    with pytest.raises(RftkitError, match="no usable rows"):
        resolve_supervised(spec, rows=0, parameters=None)


def test_load_job_resolves_paths_next_to_the_yaml(tmp_path):
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "job.yaml").write_text(
        "model: m\ntraining_file: train.jsonl\nmethod:\n  type: supervised\n"
    )
    spec = load_job(tmp_path / "sub" / "job.yaml")
    assert spec.training_file == str((tmp_path / "sub" / "train.jsonl").resolve())
    assert spec.model == "m"  # not a local path: left as a hub name


def test_yaml_syntax_errors_name_the_line(tmp_path):
    path = tmp_path / "job.yaml"
    path.write_text("model: m\nmethod: {type: supervised\n")
    with pytest.raises(RftkitError, match=r"job.yaml:\d+: invalid YAML"):
        load_job(path)


def test_every_field_is_documented():
    from rftkit.config import iter_fields

    undocumented = [path for path, _, description in iter_fields() if not description]
    assert undocumented == []


def test_jobspec_json_schema_is_exportable():
    schema = JobSpec.model_json_schema()
    assert "method" in schema["properties"]



def test_bare_off_and_no_in_yaml_mean_the_words(tmp_path):
    """YAML 1.1 reads `off` and `no` as false; choice fields that have the word get it back,
    and a false where no such word is a choice is still refused."""
    import yaml

    job = tmp_path / "job.yaml"
    job.write_text(yaml.safe_dump(rl_job()) + "rftkit:\n  rollout_correction: {mode: off}\n  fsdp: {mixed_precision: no}\n")
    spec = load_job(job)
    assert spec.rftkit.rollout_correction.mode == "off" and spec.rftkit.fsdp.mixed_precision == "no"
    with pytest.raises(RftkitError, match="algorithm"):
        parse_job({**rl_job(), "rftkit": {"algorithm": False}})


@pytest.mark.parametrize("precision, mixed", [("bf16", "no"), ("bf16-pure", "bf16")])
def test_a_precision_the_sharded_replica_would_contradict_is_refused(precision, mixed):
    fsdp = {"enabled": True, "mixed_precision": mixed}
    with pytest.raises(RftkitError, match="leave fsdp.mixed_precision at auto"):
        parse_job({**rl_job(), "rftkit": {"precision": precision, "fsdp": fsdp}})
    parse_job({**rl_job(), "rftkit": {"precision": precision, "fsdp": {**fsdp, "enabled": False}}})
    assert parse_job({**rl_job(), "rftkit": {"precision": precision}}).rftkit.fsdp.mixed_precision == "auto"


def test_async_is_the_asynchronous_block(tmp_path):
    (tmp_path / "job.yaml").write_text(
        "model: m\ntraining_file: t.jsonl\nmethod: {type: reinforcement, reinforcement: {grader: "
        "{type: string_check, name: g, input: x, reference: x, operation: eq}}}\n"
        "rftkit: {async: {max_staleness: 1}}\n")
    assert load_job(tmp_path / "job.yaml").rftkit.asynchronous.max_staleness == 1
    with pytest.raises(RftkitError, match="same setting"):
        parse_job({**rl_job(), "rftkit": {"async": {"max_staleness": 1}, "asynchronous": {"max_staleness": 0}}})
    with pytest.raises(RftkitError, match=r"rftkit\.asynchronous\.max_staleness"):
        parse_job({**rl_job(), "rftkit": {"async": {"max_staleness": 2}}})
