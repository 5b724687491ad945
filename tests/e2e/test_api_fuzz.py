"""Malformed requests against a real `rftkit serve`: every route the server publishes in its
OpenAPI schema gets junk ids (very long, unicode, path-like, NUL), junk query values, junk JSON
and junk multipart uploads, from a seeded generator. None may answer 5xx, and the server must
still answer afterwards. A failure lists each request that answered 5xx, to replay by hand."""

from __future__ import annotations

import random
import re
from urllib.parse import quote

import httpx
import pytest

from pg_server import postgres_url  # noqa: F401  (a fixture)
from service_helpers import Server, create_key

SEED = 17
REQUESTS = 400

JUNK_IDS = [
    "", " ", "a" * 300, "b" * 5000, "é" * 200, "模型🚀", "../../etc/passwd", "..", ".", "/etc/passwd",
    "\x00", "a\x00b", "%", "\n", "ftjob-" + "z" * 300, "ftjob-\u202e", "file-" + "9" * 1000,
    "ft:" + "x" * 400 + ":alpha::ftjob-" + "0" * 24, "ft:tiny:alpha::ftjob-000000000000000000000000:ckpt-step-99",
    "ft:tiny:alpha::ftjob-1:ckpt-step-" + "9" * 400, "ftckpt_" + "q" * 600, "ftevent-" + "9" * 40, "ftevent--1",
    "C:\\Windows\\system32", "~/.ssh/id_rsa", "tiny/" * 100, "/" + "d" * 256 + "/model", "null", "[]", "{}",
]
JUNK_VALUES = [None, True, False, -1, 0, 2**70, 1e308, -1.5, "", "x" * 3000, [], [None], {}, {"a": []},
               "../../etc", "\x00", "🚀" * 50, [[1, 2], "a"], {"type": "python", "source": "def grade(:"}]
FIELDS = ["model", "training_file", "validation_file", "method", "rftkit", "messages", "prompt", "grader",
          "item", "model_sample", "lora_name", "lora_path", "items", "stream", "n", "max_tokens", "seed",
          "temperature", "logprobs", "suffix", "hyperparameters", "type", "answers", "choice", "purpose"]
QUERIES = ["after", "limit", "purpose", "step", "split", "order", "project"]


def junk_id(rng: random.Random) -> str:
    if rng.random() < 0.2:
        return "".join(chr(rng.randrange(1, 0x2FFF)) for _ in range(rng.randrange(1, 400)))
    return rng.choice(JUNK_IDS)


def junk_value(rng: random.Random, depth: int = 0):
    if depth < 2 and rng.random() < 0.3:
        return {rng.choice(FIELDS): junk_value(rng, depth + 1) for _ in range(rng.randrange(1, 4))}
    if depth < 2 and rng.random() < 0.15:
        return [junk_value(rng, depth + 1) for _ in range(rng.randrange(0, 3))]
    return rng.choice(JUNK_VALUES + JUNK_IDS)


def junk_body(rng: random.Random) -> dict:
    """httpx keyword arguments for one junk body: JSON, bytes that are not JSON, or multipart."""
    kind = rng.randrange(4)
    if kind == 0:  # an object with the fields the routes read, junk in each; often a junk model name
        body = {rng.choice(FIELDS): junk_value(rng) for _ in range(rng.randrange(0, 6))}
        if rng.random() < 0.5:
            body.update(model=junk_id(rng), messages=[{"role": "user", "content": "hi"}], prompt="hi")
        return {"json": body}
    if kind == 1:
        return {"json": junk_value(rng)}
    if kind == 2:
        raw = rng.choice([b"{", b"\xff\xfe", b"[1,", b"null", b"", b'{"model": "a"' * 50,
                          b'{"temperature": NaN, "n": Infinity, "max_tokens": -Infinity}', rng.randbytes(64)])
        return {"content": raw, "headers": {"Content-Type": rng.choice(["application/json", "text/plain"])}}
    content = rng.choice([b"", b"{}\n", b"\x00" * 100, b"SQLite format 3\x00" + rng.randbytes(200),
                          b'{"messages": "no"}\n' * 3, rng.randbytes(300)])
    filename = rng.choice(["a.jsonl", "", "../../x.jsonl", "é.parquet", "x" * 600 + ".json", "db.sqlite", "\x01"])
    data = {"purpose": rng.choice(["fine-tune", "user_data", "batch", "", "x" * 500])} if rng.random() < 0.8 else {}
    files = {rng.choice(["file", "items", "junk"]): (filename, content, "application/octet-stream")}
    return {"data": data, "files": files}


def fill(path: str, rng: random.Random) -> str:
    """The route's path with each {param} replaced by a percent-encoded junk id."""
    def one(match: re.Match) -> str:
        value = junk_id(rng) or "x"
        slashes_kept = match.group(0).endswith(":path}") and rng.random() < 0.3  # a path-like model name
        return quote(value, safe="/" if slashes_kept else "")
    return re.sub(r"\{[^}]+\}", one, path)


def routes(url: str) -> list[tuple[str, str]]:
    schema = httpx.get(url + "/openapi.json", timeout=30).json()
    return sorted((method.upper(), path) for path, methods in schema["paths"].items() for method in methods)


@pytest.fixture(params=["sqlite", "postgresql"])
def server(request, tmp_path):
    """A server on SQLite, and one on PostgreSQL (which refuses what SQLite takes: NUL in text)."""
    db = request.getfixturevalue("postgres_url") if request.param == "postgresql" else None
    data_dir = tmp_path / "data"
    key = create_key(data_dir, "alpha") if db is None else create_key_in(db, "alpha")
    server = Server(data_dir, workers=0, db=db).start()
    yield server, key
    server.stop()


def create_key_in(db: str, project: str) -> str:
    """A key in a fresh PostgreSQL database: the tables other tests left are emptied first."""
    from sqlalchemy import text

    from rftkit.jobs.db import metadata, open_engine
    from rftkit.jobs.keys import create_key as new_key

    engine = open_engine(db)
    with engine.begin() as conn:
        for table in reversed(metadata.sorted_tables):
            conn.execute(text(f"DELETE FROM {table.name}"))
    key = new_key(engine, project)[0]
    engine.dispose()
    return key


def junk_request(rng: random.Random, method: str, path: str) -> dict:
    """httpx.request arguments: the route with junk ids, junk query values, a junk body for
    POST and, now and then, a junk Idempotency-Key (as much junk as HTTP itself can carry)."""
    params = {rng.choice(QUERIES): str(junk_value(rng))[:200] for _ in range(rng.randrange(0, 3))}
    request = {"method": method, "url": fill(path, rng), "params": params,
               **(junk_body(rng) if method == "POST" else {})}
    if method == "POST" and rng.random() < 0.1:
        key = re.sub(r"[\x00-\x1f\x7f]", "?", junk_id(rng))[:3000].strip() or "k"
        request.setdefault("headers", {})["Idempotency-Key"] = key.encode("utf-8")
    return request


def problem(request: dict, reply: httpx.Response) -> str | None:
    """Why the reply is wrong (a 5xx, or an error that is not OpenAI's object), to replay by hand."""
    shown = {k: v if len(repr(v)) < 300 else repr(v)[:300] + "..." for k, v in request.items()}
    if reply.status_code >= 500:
        return f"{shown} -> {reply.status_code} {reply.text[:200]}"
    if reply.status_code >= 400 and "json" in reply.headers.get("content-type", ""):
        error = reply.json().get("error") if isinstance(reply.json(), dict) else None
        if not isinstance(error, dict) or not isinstance(error.get("message"), str):
            return f"{shown} -> {reply.status_code}, not OpenAI's error object: {reply.text[:200]}"
    return None


def test_malformed_requests_never_answer_5xx(server):
    server, key = server
    rng, found = random.Random(SEED), routes(server.url)
    assert len(found) >= 20 and ("DELETE", "/v1/models/{model}") in found
    failures = []
    with httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {key}"}, timeout=60) as client:
        for n in range(REQUESTS):  # every route once, then routes at random
            request = junk_request(rng, *(found[n] if n < len(found) else rng.choice(found)))
            try:
                failure = problem(request, client.request(**request))
            except httpx.TransportError as err:  # the server dropped the connection
                failure = f"{request['method']} {request['url'][:200]} -> {err!r}"
            if failure:
                failures.append(failure)
        assert failures == [], f"{len(failures)} of {REQUESTS} requests failed:\n" + "\n".join(failures[:30])
        assert client.get("/v1/models").status_code == 200  # still answering
        kept = client.get("/v1/files").json()["data"]
    assert server.process.poll() is None
    assert kept == [] and list((server.data_dir / "files").iterdir()) == []  # no refused upload left behind
