"""The network rule for graders over the API (graders/network.py), against real local servers:
what is refused and why, what the operator allows, the check at every connection, redirects,
and the user's own commands left alone."""

import re

import pytest

from rftkit.errors import RftkitError
from rftkit.graders import GraderContext, build_grader
from rftkit.graders.base import GraderFailure
from rftkit.graders.http import HttpClient, settings_from
from rftkit.graders.network import HostRefused, NetworkPolicy, parse_allowed
from rftkit.types import Sample

ITEM = {"messages": [{"role": "user", "content": "2+2?"}]}


def reward_one(_path, body):
    return 200, [{"id": r["id"], "aggregate_reward_score": 1.0} for r in body]


def endpoint(url: str) -> dict:
    return {"type": "endpoint", "name": "svc", "url": url}


@pytest.mark.parametrize("url, reason", [
    ("http://127.0.0.1:9/r", "127.0.0.1 is a loopback address"),
    ("http://localhost:9/r", "localhost resolves to 127.0.0.1, a loopback address"),  # a name is resolved
    ("http://[::1]:9/r", "::1 is a loopback address"),
    ("http://[::ffff:127.0.0.1]/r", "::ffff:127.0.0.1 is a loopback address"),
    ("http://169.254.169.254/latest/meta-data/", "169.254.169.254 is a cloud-metadata address"),
    ("http://[fd00:ec2::254]/latest", "fd00:ec2::254 is a cloud-metadata address"),
    ("http://metadata.google.internal/computeMetadata/v1/", "metadata.google.internal is a cloud-metadata service"),
    ("http://169.254.1.1/", "169.254.1.1 is a link-local address"),
    ("http://[fe80::1]/", "fe80::1 is a link-local address"),
    ("http://10.1.2.3/", "10.1.2.3 is a private address"),
    ("http://192.168.0.10:8080/", "192.168.0.10 is a private address"),
    ("http://0.0.0.0:8000/", "0.0.0.0 is an unspecified address"),
    ("http://100.64.0.1/", "100.64.0.1 is an address that is not public"),
])
def test_what_graders_over_the_api_may_not_reach(url, reason):
    with pytest.raises(HostRefused) as refused:
        NetworkPolicy().check_url(url, "svc: url")
    message = str(refused.value)
    assert message.startswith(f"svc: url: {reason}, which graders over the API may not reach")
    assert "rftkit serve --allow-grader-host" in message


@pytest.mark.parametrize("url", ["http://judge:99999/v1", "http://[::1/v1", "http:///v1"])
def test_a_url_that_cannot_be_checked_is_refused_naming_it(url):
    with pytest.raises(HostRefused, match=r"svc: url: .* (is not a valid URL|names no host)"):
        NetworkPolicy().check_url(url, "svc: url")


def test_public_addresses_and_names_that_do_not_resolve_yet_pass():
    NetworkPolicy().check_url("https://8.8.8.8/v1", "judge")
    NetworkPolicy().check_url("http://judge.invalid/v1", "judge")  # connecting fails later, and is checked then
    NetworkPolicy().check_url(f"http://{'a' * 70}.com/v1", "judge")  # no IDNA encoding: it cannot resolve either


def test_the_operator_allows_hosts_ports_and_networks():
    policy = NetworkPolicy.parse(["127.0.0.1:9", "Localhost", "10.0.0.0/8", "[::1]:80"])
    for url in ("http://127.0.0.1:9/r", "http://localhost:1234/", "http://10.200.0.1/", "http://[::1]/"):
        policy.check_url(url, "svc: url")
    for url, shown in (("http://127.0.0.1:10/r", "127.0.0.1:10"), ("http://[::1]:81/", "[::1]:81"),
                       ("http://192.168.1.1/", "192.168.1.1:80")):
        with pytest.raises(HostRefused, match=re.escape(f"--allow-grader-host {shown} ")):
            policy.check_url(url, "svc: url")


@pytest.mark.parametrize("entry", ["a b", "1.2.3.4:99999", "http://judge", "10.0.0.0/33", "judge:port", ""])
def test_a_bad_allow_entry_names_the_flag_and_the_forms(entry):
    if not entry:
        assert NetworkPolicy.parse([entry]).allowed == ()  # an empty variable allows nothing
        return
    with pytest.raises(RftkitError, match=r"--allow-grader-host: .* is not HOST, HOST:PORT or a CIDR network"):
        parse_allowed(entry)


def test_the_rule_travels_to_workers_through_the_environment(monkeypatch):
    policy = NetworkPolicy.parse(["judge.internal:8001", "10.0.0.0/8"])
    monkeypatch.delenv("RFTKIT_GRADER_NETWORK", raising=False)
    assert NetworkPolicy.from_env() is None  # the user's own `rftkit train`: any host
    monkeypatch.setenv("RFTKIT_GRADER_NETWORK", policy.to_env())
    assert NetworkPolicy.from_env() == policy
    monkeypatch.setenv("RFTKIT_GRADER_NETWORK", "[]")
    assert NetworkPolicy.from_env() == NetworkPolicy()  # restricted, nothing extra allowed


def test_an_endpoint_on_loopback_is_refused_before_any_request(serve):
    server = serve(reward_one)
    with pytest.raises(HostRefused, match="svc: url: 127.0.0.1 is a loopback address"):
        build_grader(endpoint(server.url + "/r"), GraderContext(network=NetworkPolicy()))
    assert server.requests == []
    port = server.url.rsplit(":", 1)[1]
    allowed = GraderContext(network=NetworkPolicy.parse([f"127.0.0.1:{port}"]))
    with build_grader(endpoint(server.url + "/r"), allowed) as grader:
        assert grader.grade(Sample("4"), ITEM).reward == 1.0
    with build_grader(endpoint(server.url + "/r"), GraderContext()) as grader:  # the user's own command
        assert grader.grade(Sample("4"), ITEM).reward == 1.0
    assert len(server.requests) == 2


def test_a_judge_on_loopback_is_refused_unless_allowed(serve, chat_reply, judge_context):
    server = serve(lambda path, body: (200, chat_reply('{"result": 0.5}')))
    spec = {"type": "score_model", "name": "judge", "model": "m", "input": [{"role": "user", "content": "x"}]}
    with pytest.raises(HostRefused, match=r"judge: the judge endpoint \(RFTKIT_JUDGE_BASE_URL\): 127.0.0.1 is a loop"):
        build_grader(spec, judge_context(server.url, network=NetworkPolicy()))
    with build_grader(spec, judge_context(server.url, network=NetworkPolicy.parse(["127.0.0.1"]))) as grader:
        assert grader.grade(Sample("4"), ITEM).reward == 0.5
    assert len(server.requests) == 1


def test_every_connection_is_checked_not_only_the_url_given(serve):
    """The transport checks each connection itself: a client that skipped the up-front check
    (or a name that resolves elsewhere by then) still reaches nothing refused."""
    server = serve(reward_one)
    client = HttpClient(settings_from(GraderContext(judge_max_retries=0)), network=NetworkPolicy())
    with pytest.raises(GraderFailure, match="grader connection: 127.0.0.1 is a loopback address"):
        client.post_json(server.url + "/r", [])
    localhost = server.url.replace("127.0.0.1", "localhost")
    with pytest.raises(GraderFailure, match="grader connection: localhost resolves to"):
        client.post_json(localhost + "/r", [])
    client.close()
    assert server.requests == []


def test_redirects_are_not_followed_to_any_host(serve):
    target = serve(reward_one)
    redirector = serve(lambda path, body: (307, {}, {"Location": target.url + "/r"}))
    port = redirector.url.rsplit(":", 1)[1]
    context = GraderContext(judge_max_retries=0, network=NetworkPolicy.parse([f"127.0.0.1:{port}"]))
    with build_grader(endpoint(redirector.url + "/r"), context) as grader:
        grade = grader.grade(Sample("4"), ITEM)
    errors = grade.metadata["errors"]
    assert grade.reward == 0.0 and errors["unresponsive_reward_error"]
    assert "answered a redirect (HTTP 307); graders do not follow redirects" in errors["unresponsive_reward_error_details"]
    assert len(redirector.requests) == 1 and target.requests == []
