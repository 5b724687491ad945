"""`rftkit serve` under load: 50 clients poll a job's status and events while it trains.

    .venv/bin/python bench/service.py --clients 50 --seconds 30

Starts a real server (uvicorn, SQLite in a temp dir) with a tiny model, then runs the same
polling load twice: with no job running (the peer: the server alone) and while a job trains
in its worker process. Each client alternates GET /v1/fine_tuning/jobs/{id} and
GET .../events?limit=20, once every --interval seconds (as the dashboard polls; start times
spread at random), or as fast as answers come with --interval 0 (saturation). Reports p50 /
p99 / max latency, requests per second and errors for both phases, and the ratios. Goal: p99 <
100 ms and 0 errors while training.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

KEY = "bench-service-key"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_server(root: Path) -> tuple[subprocess.Popen, str]:
    from rftkit.models.load import save_policy
    from rftkit.models.tiny import build_tiny

    model, tokenizer = build_tiny("tiny", seed=0)
    save_policy(model, tokenizer, root / "data" / "models" / "tiny")
    port = free_port()
    env = {**os.environ, "RFTKIT_API_KEY": KEY, "PYTHONWARNINGS": "ignore", "OMP_NUM_THREADS": "1"}
    server = subprocess.Popen([sys.executable, "-m", "rftkit.cli", "serve", "--port", str(port), "--data-dir",
                               str(root / "data")], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                              start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    for _ in range(600):
        try:
            if httpx.get(url + "/v1/models", timeout=1).status_code == 401:
                return server, url
        except httpx.HTTPError:
            time.sleep(0.1)
    raise SystemExit("the server did not start")


def create_job(client: httpx.Client, root: Path, steps: int) -> str:
    prompts = [{"messages": [{"role": "user", "content": f"say something with an a, take {i}"}]} for i in range(16)]
    ids = []
    for name, rows in (("train.jsonl", prompts[:12]), ("valid.jsonl", prompts[12:])):
        data = "".join(json.dumps(r) + "\n" for r in rows).encode()
        ids.append(client.post("/v1/files", data={"purpose": "fine-tune"}, files={"file": (name, data)}).json()["id"])
    grader = {"type": "string_check", "name": "has a", "input": "{{ sample.output_text }}", "reference": "a",
              "operation": "like"}
    body = {"model": "tiny", "training_file": ids[0], "validation_file": ids[1], "seed": 3,
            "method": {"type": "reinforcement", "reinforcement": {"grader": grader,
                                                                  "hyperparameters": {"batch_size": 4}}},
            "rftkit": {"group_size": 4, "learning_rate": 1e-3, "max_steps": steps, "device": "cpu",
                       "lengths": {"max_completion_tokens": 16}, "eval": {"k": 4}}}
    return client.post("/v1/fine_tuning/jobs", json=body).json()["id"]


async def poll(url: str, job_id: str, clients: int, seconds: float, interval: float) -> dict:
    latencies: list[float] = []
    errors: list[str] = []
    paths = [f"/v1/fine_tuning/jobs/{job_id}", f"/v1/fine_tuning/jobs/{job_id}/events?limit=20"]
    stop_at = time.perf_counter() + seconds
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(base_url=url, headers={"Authorization": f"Bearer {KEY}"}, limits=limits,
                                 timeout=30) as client:
        async def one_client(index: int) -> None:
            turn = index
            await asyncio.sleep(random.uniform(0, interval))
            while time.perf_counter() < stop_at:
                start = time.perf_counter()
                try:
                    reply = await client.get(paths[turn % 2])
                    if reply.status_code != 200:
                        errors.append(f"HTTP {reply.status_code}")
                except httpx.HTTPError as err:
                    errors.append(type(err).__name__)
                latencies.append(time.perf_counter() - start)
                turn += 1
                await asyncio.sleep(max(0.0, interval - (time.perf_counter() - start)))

        await asyncio.gather(*(one_client(i) for i in range(clients)))
    latencies.sort()
    pick = lambda q: latencies[min(len(latencies) - 1, int(q * len(latencies)))] * 1000  # noqa: E731
    return {"requests": len(latencies), "per_s": len(latencies) / seconds, "p50_ms": pick(0.50),
            "p99_ms": pick(0.99), "max_ms": latencies[-1] * 1000, "errors": len(errors)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--seconds", type=float, default=30.0, help="Length of each phase.")
    parser.add_argument("--interval", type=float, default=1.0, help="Seconds between one client's polls (0: no pause).")
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="rftkit-bench-service-"))
    server, url = start_server(root)
    try:
        with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {KEY}"}, timeout=60) as client:
            job_id = create_job(client, root, steps=100_000)
            client.post(f"/v1/fine_tuning/jobs/{job_id}/pause")  # queued -> paused: the server alone
            idle = asyncio.run(poll(url, job_id, args.clients, args.seconds, args.interval))
            client.post(f"/v1/fine_tuning/jobs/{job_id}/resume")
            while not client.get(f"/v1/fine_tuning/jobs/{job_id}").json()["rftkit"]["steps_done"]:
                time.sleep(0.2)
            training = asyncio.run(poll(url, job_id, args.clients, args.seconds, args.interval))
            steps = client.get(f"/v1/fine_tuning/jobs/{job_id}").json()["rftkit"]["steps_done"]
            client.post(f"/v1/fine_tuning/jobs/{job_id}/cancel")
    finally:
        server.send_signal(signal.SIGINT)
        server.wait(60)
        shutil.rmtree(root, ignore_errors=True)
    pace = f"each polling every {args.interval:g} s" if args.interval else "each polling without pause"
    print(f"{args.clients} clients {pace}, {args.seconds:.0f} s per phase; the job trained to step {steps}")
    print(f"| | requests/s | p50 ms | p99 ms | max ms | errors |\n| --- | ---: | ---: | ---: | ---: | ---: |")
    for name, r in (("server alone (job paused)", idle), ("while a job trains", training)):
        print(f"| {name} | {r['per_s']:,.0f} | {r['p50_ms']:.1f} | {r['p99_ms']:.1f} | {r['max_ms']:.0f} | {r['errors']} |")
    print(f"training / alone: p99 x{training['p99_ms'] / idle['p99_ms']:.2f}, "
          f"throughput x{training['per_s'] / idle['per_s']:.2f}; goal p99 < 100 ms and 0 errors: "
          f"{'met' if training['p99_ms'] < 100 and training['errors'] == 0 else 'NOT met'}")


if __name__ == "__main__":
    main()
