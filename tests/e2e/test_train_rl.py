"""`rftkit train` on reinforcement jobs: the run directory, kill-and-resume, refusals."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from helpers import kill_and_resume, metrics_of, run_cli, write_job, write_jsonl

def start_training(job, run, steps_done: int) -> subprocess.Popen:
    """`rftkit train` in the background, returned once `steps_done` steps have their metrics."""
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    process = subprocess.Popen([sys.executable, "-m", "rftkit.cli", "train", str(job), "--out", str(run), "--force"],
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env)
    metrics, deadline = run / "metrics.jsonl", time.time() + 240
    while time.time() < deadline and not (metrics.exists() and len(metrics.read_text().splitlines()) >= steps_done):
        time.sleep(0.05)
    return process


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory, tiny_dir):
    tmp_path = tmp_path_factory.mktemp("whole")
    job = write_job(tmp_path, tiny_dir)
    result = run_cli("train", job, "--out", tmp_path / "run", "--force")
    assert result.returncode == 0, result.stderr
    return tmp_path / "run", result


def test_run_directory_holds_everything(uninterrupted):
    run, result = uninterrupted
    for name in ("metrics.jsonl", "samples.jsonl", "events.jsonl", "baseline.json", "final.json", "summary.json",
                 "report.html", "model/config.json", "job.json"):
        assert (run / name).exists(), name
    assert sorted(p.name for p in run.glob("checkpoint-*")) == ["checkpoint-5", "checkpoint-6"]  # keep_last 2
    metrics = metrics_of(run)
    assert [m["step"] for m in metrics] == [1, 2, 3, 4, 5, 6]
    assert {"train_reward_mean", "train_grader_has_a_mean", "train_grader_has_a_error_rate", "entropy",
            "completion_length_mean", "zero_variance_frac"} <= set(metrics[0])
    assert [m["step"] for m in metrics if "valid_reward_mean" in m] == [2, 4, 6]
    report = (run / "report.html").read_text()
    assert "<svg" in report and "http://" not in report and "https://" not in report and "<script" not in report
    assert "held-out evaluation" in result.stderr and "succeeded: 6/6 steps" in result.stderr
    samples = [json.loads(line) for line in (run / "samples.jsonl").read_text().splitlines()]
    assert {s["split"] for s in samples} == {"baseline", "train", "valid", "final"}


def test_kill_at_any_moment_then_resume_matches_an_uninterrupted_run(tmp_path, tiny_dir, uninterrupted):
    whole, _ = uninterrupted
    job = write_job(tmp_path, tiny_dir)
    run = tmp_path / "run"
    kill_and_resume(start_training(job, run, steps_done=3), job, run)
    assert metrics_of(run) == metrics_of(whole)
    events = [json.loads(line) for line in (run / "events.jsonl").read_text().splitlines()]
    metric_steps = [e["step"] for e in events if e["type"] == "metrics"]
    assert metric_steps == [1, 2, 3, 4, 5, 6]  # each step's metrics exactly once


def test_pause_by_signal_then_resume(tmp_path, tiny_dir, uninterrupted):
    whole, _ = uninterrupted
    job = write_job(tmp_path, tiny_dir)
    run = tmp_path / "run"
    process = start_training(job, run, steps_done=1)
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=240)
    assert process.returncode == 3, stderr
    assert "paused at step" in stderr
    summary = json.loads((run / "summary.json").read_text())
    assert summary["status"] == "paused" and summary["steps"] < 6
    assert (run / f"checkpoint-{summary['steps']}").exists()
    assert run_cli("train", job, "--out", run, "--resume").returncode == 0
    # a signal during a step's validation pass skips the pass by design (the event says so): that
    # step's valid_* figures are the only ones the paused run may lack
    events = [json.loads(line)["message"] for line in (run / "events.jsonl").read_text().splitlines()]
    skipped = {int(m.split()[3]) for m in events if m.startswith("validation at step") and " skipped " in m}
    assert skipped <= {summary["steps"]}

    def without_skipped(rows):
        return [{k: v for k, v in r.items() if not (r["step"] in skipped and k.startswith("valid_"))} for r in rows]

    assert metrics_of(run) == without_skipped(metrics_of(whole))


def test_corrupt_checkpoint_is_refused(tmp_path, uninterrupted):
    import shutil

    run = tmp_path / "run"
    shutil.copytree(uninterrupted[0], run)
    weights = run / "checkpoint-6" / "model" / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-10] ^= 0xFF
    weights.write_bytes(bytes(data))
    job = json.loads((run / "job.json").read_text())
    (tmp_path / "job.yaml").write_text(json.dumps(job))
    result = run_cli("train", tmp_path / "job.yaml", "--out", run, "--resume")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "checkpoint-6: corrupt checkpoint, model/model.safetensors does not match its checksum" in result.stderr
    assert "delete" in result.stderr


def test_resume_without_checkpoints_is_refused(tmp_path, tiny_dir):
    job = write_job(tmp_path, tiny_dir)
    result = run_cli("train", job, "--out", tmp_path / "empty", "--resume")
    assert result.returncode == 2 and "no checkpoint to resume from" in result.stderr


def test_baseline_with_no_reward_stops_with_advice(tmp_path, tiny_dir):
    job = write_job(tmp_path, tiny_dir)
    spec = json.loads(job.read_text())
    spec["method"]["reinforcement"]["grader"]["reference"] = "this exact sentence never appears"
    job.write_text(json.dumps(spec))
    result = run_cli("train", job, "--out", tmp_path / "run")
    assert result.returncode == 2
    assert "baseline: pass@4 is 0" in result.stderr and "SFT warm start" in result.stderr and "--force" in result.stderr


def test_export_merges_a_lora_run(tmp_path, tiny_dir):
    job = write_job(tmp_path, tiny_dir, steps=2, lora={"enabled": True, "r": 4})
    assert run_cli("train", job, "--out", tmp_path / "run", "--force").returncode == 0
    assert (tmp_path / "run" / "model" / "adapter_config.json").exists()
    merged = run_cli("export", tmp_path / "run", "--out", tmp_path / "merged", "--merge")
    assert merged.returncode == 0, merged.stderr
    adapter = run_cli("export", tmp_path / "run" / "checkpoint-2", "--out", tmp_path / "adapter")
    assert adapter.returncode == 0, adapter.stderr
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(tmp_path / "merged")
    assert not any("lora" in name for name, _ in model.named_parameters())
    assert (tmp_path / "adapter" / "adapter_config.json").exists()


def test_auto_pause_stops_with_a_checkpoint_and_an_event(tmp_path, tiny_dir):
    job = write_job(tmp_path, tiny_dir, kl={"coef": 0.1}, monitor={"auto_pause_kl": 1e-9})
    result = run_cli("train", job, "--out", tmp_path / "run", "--force")
    assert result.returncode == 3, result.stderr
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["status"] == "paused" and summary["steps"] == 2  # KL is exactly 0 at step 1
    assert (tmp_path / "run" / "checkpoint-2").exists()
    events = [json.loads(line) for line in (tmp_path / "run" / "events.jsonl").read_text().splitlines()]
    assert any("auto-pause: KL" in e["message"] for e in events)


def test_an_unreachable_rollout_server_fails_the_job_with_a_resumable_checkpoint(tmp_path, tiny_dir):
    job = write_job(tmp_path, tiny_dir, steps=2, engine="openai",
                    engine_options={"base_url": "http://127.0.0.1:9/v1", "max_retries": 1, "backoff_s": 0.01})
    result = run_cli("train", job, "--out", tmp_path / "run")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "rollout engine failed at step 0" in result.stderr and "continue with --resume" in result.stderr
    assert (tmp_path / "run" / "checkpoint-0").is_dir()
    assert json.loads((tmp_path / "run" / "summary.json").read_text())["status"] == "failed"
    again = run_cli("train", job, "--out", tmp_path / "run", "--resume")  # the server is still down
    assert again.returncode == 2 and "rollout engine failed at step 0" in again.stderr
