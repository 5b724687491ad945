"""The baseline check with partial-credit graders and without a validation file, and stop
requests (SIGTERM) that take effect during a validation pass, for `rftkit train` and `rftkit serve`."""

import json
import os
import signal
import subprocess
import sys
import time

import httpx
import pytest

from helpers import run_cli, write_jsonl
from service_helpers import Server, create_key, wait_for

HANG_LIMIT_S = 30  # a hang detector: a stop honoured between batches takes well under a second here
FUZZY = {"type": "text_similarity", "name": "close to a", "input": "{{ sample.output_text }}",
         "reference": "a sentence with an a", "evaluation_metric": "fuzzy_match"}
NEVER = {"type": "string_check", "name": "never", "input": "{{ sample.output_text }}",
         "reference": "this exact sentence never appears", "operation": "eq"}


def prompts(count: int) -> list[dict]:
    return [{"messages": [{"role": "user", "content": f"say something with an a, take {i}"}]} for i in range(count)]


def write_job(folder, model_dir, grader, *, valid: int | None = 4, steps: int = 1, **rftkit_extra) -> dict:
    write_jsonl(folder / "train.jsonl", prompts(8))
    job = {"model": str(model_dir), "training_file": str(folder / "train.jsonl"), "seed": 3,
           "method": {"type": "reinforcement", "reinforcement": {
               "grader": grader, "hyperparameters": {"batch_size": 4, "eval_interval": 1}}},
           "rftkit": {"group_size": 2, "learning_rate": 1e-3, "max_steps": steps, "device": "cpu",
                      "lengths": {"max_completion_tokens": 8}, "eval": {"k": 2},
                      "checkpoints": {"interval": 1, "keep_last": 2}, **rftkit_extra}}
    if valid is not None:
        write_jsonl(folder / "valid.jsonl", prompts(valid))
        job["validation_file"] = str(folder / "valid.jsonl")
    (folder / "job.yaml").write_text(json.dumps(job))  # JSON is YAML
    return job


def events(run) -> list[dict]:
    return [json.loads(line) for line in (run / "events.jsonl").read_text().splitlines()]


def test_a_partial_credit_grader_without_a_validation_file_passes_the_baseline_with_a_warning(tmp_path, tiny_dir):
    """pass@k is 0 at threshold 1.0, yet samples earn partial reward: a warning, not an abort; and
    with no validation file the check samples the training prompts and says so."""
    write_job(tmp_path, tiny_dir, FUZZY, valid=None)
    result = run_cli("train", tmp_path / "job.yaml", "--out", tmp_path / "run")
    assert result.returncode == 0, result.stderr
    assert "no validation file, so the check runs on 8 of 8 training prompts" in result.stderr
    baseline = json.loads((tmp_path / "run" / "baseline.json").read_text())
    assert baseline["prompts"] == 8 and baseline["prompts_from"] == "training prompts"
    assert baseline["pass_threshold"] == 1.0 and baseline["pass_at_k"] == 0
    assert 0 < baseline["rewards"]["max"] < 1 and baseline["rewards"]["positive_share"] > 0
    logged = events(tmp_path / "run")
    assert any("no validation file" in e["message"] for e in logged)
    assert any(e["level"] == "warn" and "no sample reaches the pass threshold 1" in e["message"]
               and "partial reward" in e["message"] for e in logged)


def test_without_a_validation_file_a_job_with_no_reward_still_stops(tmp_path, tiny_dir):
    write_job(tmp_path, tiny_dir, NEVER, valid=None)
    result = run_cli("train", tmp_path / "job.yaml", "--out", tmp_path / "run")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "baseline: pass@2 is 0 and no sample earns any reward on 8 training prompts" in result.stderr


# ----------------------------------------------------------------------------- stop requests

LONG_VALIDATION = {"eval": {"k": 2, "baseline": False}, "eval_batch_size": 2}  # thousands of small batches


def wait_for_event(path, text: str, process=None, timeout: float = 240) -> None:
    def seen():
        if process is not None and process.poll() is not None:
            raise AssertionError(f"exited with {process.returncode} before {text!r}")
        return path.exists() and text in path.read_text()
    wait_for(seen, timeout=timeout, every=0.05, what=text)


def test_sigterm_during_validation_pauses_the_job_and_it_resumes(tmp_path, tiny_dir):
    write_job(tmp_path, tiny_dir, FUZZY, valid=4000, steps=2, **LONG_VALIDATION)
    run = tmp_path / "run"
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    process = subprocess.Popen([sys.executable, "-m", "rftkit.cli", "train", str(tmp_path / "job.yaml"),
                                "--out", str(run)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env)
    wait_for_event(run / "events.jsonl", "validation at step 1 started on 4000 prompts", process)
    process.send_signal(signal.SIGTERM)
    try:
        _, stderr = process.communicate(timeout=HANG_LIMIT_S)
    except subprocess.TimeoutExpired:
        process.kill()
        pytest.fail(f"rftkit train still validating {HANG_LIMIT_S} s after SIGTERM")
    assert process.returncode == 3, stderr
    summary = json.loads((run / "summary.json").read_text())
    assert summary["status"] == "paused" and summary["steps"] == 1 and (run / "checkpoint-1").is_dir()
    assert any(e["message"].startswith("validation at step 1 skipped (signal SIGTERM)") for e in events(run))
    write_jsonl(tmp_path / "valid.jsonl", prompts(4))  # the rest of the run validates on a few prompts
    result = run_cli("train", tmp_path / "job.yaml", "--out", run, "--resume")
    assert result.returncode == 0, result.stderr
    assert json.loads((run / "summary.json").read_text())["status"] == "succeeded"
    assert any(e["message"] == "resumed from checkpoint-1" for e in events(run))


def test_sigterm_to_serve_during_validation_stops_it_and_requeues_the_job(tmp_path, tiny_dir):
    data_dir = tmp_path / "data"
    key = create_key(data_dir, "alpha")
    server = Server(data_dir, args=("--model-dir", str(tiny_dir))).start()
    try:
        client = httpx.Client(base_url=server.url + "/v1", headers={"Authorization": f"Bearer {key}"}, timeout=60)
        job = write_job(tmp_path, tiny_dir, FUZZY, valid=4000, steps=2, **LONG_VALIDATION)
        for name in ("training_file", "validation_file"):
            with open(job[name], "rb") as handle:
                job[name] = client.post("/files", data={"purpose": "fine-tune"},
                                        files={"file": (f"{name}.jsonl", handle)}).json()["id"]
        job_id = client.post("/fine_tuning/jobs", json=job).json()["id"]
        wait_for(lambda: any("validation at step 1 started" in e["message"]
                             for e in client.get(f"/fine_tuning/jobs/{job_id}/events").json()["data"]),
                 timeout=240, what="the validation pass")
        server.process.send_signal(signal.SIGTERM)
        try:
            server.process.wait(HANG_LIMIT_S)
        except subprocess.TimeoutExpired:
            pytest.fail(f"rftkit serve still up {HANG_LIMIT_S} s after SIGTERM while its job validated")
        server.start()  # the job is back in the queue and resumes from its checkpoint
        resumed = wait_for(lambda: [e["message"] for e in client.get(f"/fine_tuning/jobs/{job_id}/events").json()["data"]
                                    if e["message"].startswith("Resuming from checkpoint-")], timeout=120,
                           what="the job to resume")
        assert resumed == ["Resuming from checkpoint-1"]
        client.post(f"/fine_tuning/jobs/{job_id}/cancel")
    finally:
        server.stop()
