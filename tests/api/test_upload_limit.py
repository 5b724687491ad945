"""The upload limit on a real `rftkit serve --max-upload-bytes`: a body over it is refused with 413
while it streams (chunked, no Content-Length) or before it is read (a declared Content-Length),
and nothing of it stays in the data directory; a file of exactly the limit still uploads."""

from __future__ import annotations

import json
import select
import socket

import httpx
import pytest

from service_helpers import Server, create_key

LIMIT = 2**20
CHUNK = 64 * 2**10
BOUNDARY = "rftkit-test-boundary"


def jsonl_of_size(size: int) -> bytes:
    """Valid reinforcement rows of exactly `size` bytes (lines of 1 KiB, the last one padded)."""
    empty = len(json.dumps({"messages": [{"role": "user", "content": ""}]})) + 1
    lines, left = [], size
    while left > 0:
        length = 1024 if left - 1024 >= empty or left == 1024 else left
        lines.append(json.dumps({"messages": [{"role": "user", "content": "a" * (length - empty)}]}) + "\n")
        left -= length
    data = "".join(lines).encode()
    assert len(data) == size
    return data


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    data_dir = tmp_path_factory.mktemp("upload-limit") / "data"
    key = create_key(data_dir, "alpha")
    server = Server(data_dir, workers=0, args=("--max-upload-bytes", str(LIMIT))).start()
    yield server, key
    server.stop()


def raw_request(server: Server, key: str, headers: dict) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=20)
    lines = ["POST /v1/files HTTP/1.1", f"Host: 127.0.0.1:{server.port}", f"Authorization: Bearer {key}",
             f"Content-Type: multipart/form-data; boundary={BOUNDARY}"] + [f"{k}: {v}" for k, v in headers.items()]
    sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
    return sock


def read_reply(sock: socket.socket) -> tuple[int, dict]:
    """Status and JSON body of the one response on the socket."""
    data = b""
    while b"\r\n\r\n" not in data:
        data += sock.recv(65536)
    head, body = data.split(b"\r\n\r\n", 1)
    fields = dict(line.lower().split(b":", 1) for line in head.split(b"\r\n")[1:])
    length = int(fields[b"content-length"])
    while len(body) < length:
        body += sock.recv(65536)
    return int(head.split()[1]), json.loads(body[:length])


def nothing_kept(server: Server, key: str) -> bool:
    listed = httpx.get(server.url + "/v1/files", headers={"Authorization": f"Bearer {key}"}).json()["data"]
    return listed == [] and list((server.data_dir / "files").iterdir()) == []


def test_a_chunked_upload_over_the_limit_is_refused_while_its_body_streams(server):
    server, key = server
    sock = raw_request(server, key, {"Transfer-Encoding": "chunked"})
    head = (f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="purpose"\r\n\r\nfine-tune\r\n'
            f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="file"; filename="big.jsonl"\r\n'
            "Content-Type: application/jsonl\r\n\r\n").encode()
    row = jsonl_of_size(1024)
    total, sent, answered = 64 * LIMIT, 0, False
    chunks = [head] + [row * (CHUNK // len(row))] * (total // CHUNK)
    for chunk in chunks:  # stop sending as soon as the server has answered
        if select.select([sock], [], [], 0)[0]:
            answered = True
            break
        try:
            sock.sendall(b"%x\r\n%s\r\n" % (len(chunk), chunk))
        except (BrokenPipeError, ConnectionResetError):
            answered = True
            break
        sent += len(chunk)
    assert answered and sent < total, "the server read the whole body before it answered"
    status, body = read_reply(sock)
    sock.close()
    assert status == 413 and body["error"]["code"] == "file_too_large"
    assert f"limit of {LIMIT} bytes" in body["error"]["message"] and "--max-upload-bytes" in body["error"]["message"]
    assert nothing_kept(server, key)


def test_a_declared_content_length_over_the_limit_is_refused_before_any_body(server):
    server, key = server
    sock = raw_request(server, key, {"Content-Length": str(10 * 2**30)})  # and no byte of the body
    status, body = read_reply(sock)
    sock.close()
    assert status == 413 and body["error"]["type"] == "invalid_request_error"
    assert nothing_kept(server, key)


def test_a_file_of_exactly_the_limit_uploads_and_one_byte_more_is_413(server):
    server, key = server
    headers = {"Authorization": f"Bearer {key}"}
    over = httpx.post(server.url + "/v1/files", headers=headers, data={"purpose": "fine-tune"},
                      files={"file": ("over.jsonl", jsonl_of_size(LIMIT + 1), "application/jsonl")}, timeout=60)
    assert over.status_code == 413, over.text
    assert over.json()["error"]["message"].startswith(f"over.jsonl: over the server's limit of {LIMIT} bytes")
    assert nothing_kept(server, key)
    fits = httpx.post(server.url + "/v1/files", headers=headers, data={"purpose": "fine-tune"},
                      files={"file": ("fits.jsonl", jsonl_of_size(LIMIT), "application/jsonl")}, timeout=60)
    assert fits.status_code == 200, fits.text
    assert fits.json()["bytes"] == LIMIT and fits.json()["rftkit"]["rows"] == LIMIT // 1024
