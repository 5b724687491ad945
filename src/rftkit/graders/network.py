"""Where graders that call out may connect: the network rule for graders that come over the API.

Under `rftkit train`, `rftkit grade` and the other commands, the user is the operator and a
grader reaches any host (`GraderContext.network` is None). Over the API (`rftkit serve`:
grader create, `graders/run`, `graders/validate`, feedback pre-labels, and the jobs its
workers train), a project's grader reaches only public addresses and what the operator
allows (`rftkit serve --allow-grader-host HOST[:PORT]|CIDR`). Refused unless allowed:
loopback, link-local (169.254/16, fe80::/10, where cloud metadata lives), private and
unique-local ranges (fd00:ec2::254 is AWS's metadata over IPv6), unspecified, and any other
address that is not globally routable, plus the names of metadata services.

The rule is checked twice: when the grader is built (the host name is resolved and every
address it resolves to is checked, so a name pointing at 127.0.0.1 is refused with a 400),
and again for every connection (`guarded_transport`), which connects only to an address it
has just checked, so a name that resolves elsewhere a second time gets nowhere. Redirects
are never followed (http.py). Workers learn the rule from `rftkit serve` through the
environment (`WORKER_ENV`), as they learn the job from its job.yaml.
"""

from __future__ import annotations

import ipaddress
import json
import os
import re
import socket
from dataclasses import dataclass
from urllib.parse import urlsplit

import httpcore
import httpx

from rftkit.errors import RftkitError

WORKER_ENV = "RFTKIT_GRADER_NETWORK"  # set by `rftkit serve` for the trainers it starts: the allowed entries, JSON
METADATA_NAMES = frozenset({"metadata.google.internal", "metadata.goog", "metadata"})
DEFAULT_PORTS = {"http": 80, "https": 443}
HOST_NAME = re.compile(r"^[a-z0-9]([a-z0-9-]*[a-z0-9])?(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)*$")
ALLOW_FIX = "e.g. judge.internal, judge.internal:8001, 127.0.0.1:8001, [::1]:8001 or 10.0.0.0/8"

Address = ipaddress.IPv4Address | ipaddress.IPv6Address


class HostRefused(RftkitError):
    """A grader named a host the operator's rule does not let it reach."""


@dataclass(frozen=True)
class Allowed:
    """One entry the operator allows: a host name, an address or a network; `port` None: any port."""

    name: str | None = None
    network: ipaddress.IPv4Network | ipaddress.IPv6Network | None = None
    port: int | None = None
    text: str = ""

    def admits_name(self, host: str, port: int) -> bool:
        return self.name is not None and self.name == host and self.port in (None, port)

    def admits_address(self, address: Address, port: int) -> bool:
        return self.network is not None and address in self.network and self.port in (None, port)


def parse_allowed(entry: str, where: str = "--allow-grader-host") -> Allowed:
    """HOST, HOST:PORT, [IPv6]:PORT, an address, or a CIDR network (any port).

    >>> parse_allowed("Judge.Internal:8001")
    Allowed(name='judge.internal', network=None, port=8001, text='Judge.Internal:8001')
    >>> parse_allowed("10.0.0.0/8").network
    IPv4Network('10.0.0.0/8')
    """
    text = entry.strip()
    host, port = text, None
    bracketed = re.fullmatch(r"\[([0-9a-fA-F:.]+)\](?::(\d+))?", text)
    if bracketed:
        host, port = bracketed.group(1), bracketed.group(2)
    elif text.count(":") == 1:
        host, port = text.split(":")
    try:
        port = None if port is None else int(port)
        if port is not None and not 0 < port < 65536:
            raise ValueError
        if "/" in host or _is_address(host):
            return Allowed(network=ipaddress.ip_network(host, strict=False), port=port, text=text)
    except ValueError:
        raise RftkitError(f"{where}: {entry!r} is not HOST, HOST:PORT or a CIDR network", fix=ALLOW_FIX) from None
    name = host.lower().rstrip(".")
    if not HOST_NAME.match(name):
        raise RftkitError(f"{where}: {entry!r} is not HOST, HOST:PORT or a CIDR network", fix=ALLOW_FIX)
    return Allowed(name=name, port=port, text=text)


def _is_address(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
        return True
    except ValueError:
        return False


def why_internal(address: Address) -> str | None:
    """What kind of non-public address this is, or None for a public one.

    >>> why_internal(ipaddress.ip_address("169.254.169.254")), why_internal(ipaddress.ip_address("8.8.8.8"))
    ('a cloud-metadata address', None)
    >>> why_internal(ipaddress.ip_address("::ffff:127.0.0.1"))
    'a loopback address'
    """
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    if str(address) in ("169.254.169.254", "fd00:ec2::254"):
        return "a cloud-metadata address"
    for kind, test in (("unspecified", address.is_unspecified), ("loopback", address.is_loopback),
                       ("link-local", address.is_link_local), ("private", address.is_private)):
        if test:
            return f"a{'n' if kind[0] == 'u' else ''} {kind} address"
    return None if address.is_global else "an address that is not public"


@dataclass(frozen=True)
class NetworkPolicy:
    """The operator's rule: public addresses, plus `allowed`. Build it with `NetworkPolicy.parse`."""

    allowed: tuple[Allowed, ...] = ()

    @classmethod
    def parse(cls, entries, where: str = "--allow-grader-host") -> "NetworkPolicy":
        return cls(tuple(parse_allowed(e, where) for e in entries if e.strip()))

    @classmethod
    def from_env(cls) -> "NetworkPolicy | None":
        """The rule `rftkit serve` handed its worker, or None (a command of the user's own: any host)."""
        value = os.environ.get(WORKER_ENV)
        return None if value is None else cls.parse(json.loads(value), WORKER_ENV)

    def to_env(self) -> str:
        return json.dumps([a.text for a in self.allowed])

    def refusal(self, host: str, port: int, addresses: list[Address]) -> str | None:
        """Why `host:port` (resolved to `addresses`) may not be reached, or None when it may."""
        host = host.lower().rstrip(".")
        if any(a.admits_name(host, port) for a in self.allowed):
            return None
        if host in METADATA_NAMES:
            return f"{host} is a cloud-metadata service"
        for address in addresses:
            reason = why_internal(address)
            if reason and not any(a.admits_address(address, port) for a in self.allowed):
                literal = _is_address(host) and ipaddress.ip_address(host) == address
                return f"{host} is {reason}" if literal else f"{host} resolves to {address}, {reason}"
        return None

    def addresses(self, host: str, port: int, where: str) -> list[Address]:
        """The addresses `host` resolves to, every one checked: HostRefused naming `where` when
        one is refused, OSError when the name does not resolve."""
        host = host.strip("[]")
        found: list[Address] = []
        reason = self.refusal(host, port, found)  # by its name alone: a metadata service
        if reason is None:
            found = [ipaddress.ip_address(host)] if _is_address(host) else _resolve(host, port)
            reason = self.refusal(host, port, found)
        if reason:
            shown = f"[{host}]" if ":" in host else host
            raise HostRefused(f"{where}: {reason}, which graders over the API may not reach",
                              fix=f"the operator can allow it: rftkit serve --allow-grader-host {shown}:{port} "
                                  f"(docs/security.md)")
        return found

    def check_url(self, url: str, where: str) -> None:
        """Refuse `url` now (HostRefused naming `where`) if its host may not be reached. A name
        that does not resolve passes: connecting will fail, and is checked again then."""
        try:
            parts = urlsplit(url)
            host, port = parts.hostname, parts.port or DEFAULT_PORTS.get(parts.scheme, 80)
        except ValueError as err:  # a bad port or bracket
            raise HostRefused(f"{where}: {url!r} is not a valid URL ({err})",
                              fix="give a URL like https://host:port/path") from None
        if not host:
            raise HostRefused(f"{where}: {url!r} names no host", fix="give a URL like https://host/path")
        try:
            self.addresses(host, port, where)
        except OSError:
            pass


def _resolve(host: str, port: int) -> list[Address]:
    """Every address of `host`; OSError when it has none (a name IDNA cannot encode included)."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except UnicodeError as err:
        raise OSError(f"{host!r} is not a valid host name ({err})") from None
    return list(dict.fromkeys(ipaddress.ip_address(info[4][0].split("%")[0]) for info in infos))


class _GuardedBackend:
    """httpcore's network backend, connecting only to addresses the policy has just checked."""

    def __init__(self, policy: NetworkPolicy, inner):
        self.policy, self.inner = policy, inner

    def connect_tcp(self, host, port, timeout=None, local_address=None, socket_options=None):
        try:
            found = self.policy.addresses(host, port, "grader connection")
        except OSError as err:  # a name that does not resolve: a connection error, retried as one
            raise httpcore.ConnectError(f"{host} does not resolve: {err}") from None
        last: Exception | None = None
        for address in found:
            try:
                return self.inner.connect_tcp(str(address), port, timeout, local_address, socket_options)
            except Exception as err:  # httpcore's ConnectError and kin: try the next address
                last = err
        raise last if last else OSError(f"{host} has no address")

    def connect_unix_socket(self, *args, **kwargs):
        raise HostRefused("grader connection: unix sockets are not reachable over the API")

    def sleep(self, seconds: float) -> None:
        self.inner.sleep(seconds)


def guarded_transport(policy: NetworkPolicy, limits: httpx.Limits) -> httpx.HTTPTransport:
    """An httpx transport whose every new connection obeys `policy`. Passing a transport also
    turns off proxies from the environment, which would otherwise reach hosts unchecked."""
    transport = httpx.HTTPTransport(limits=limits)
    pool = transport._pool  # httpx names no hook for the network backend; tests/unit/graders/test_network.py
    pool._network_backend = _GuardedBackend(policy, pool._network_backend)  # proves this one holds
    return transport
