"""An agent's egress policy: `none`, `allowlist` or `open`.

An allowlist is one rule per line, `[METHODS] host[:port]`: `pypi.org`, `*.github.com:443`,
`GET,HEAD example.com:80` (methods only bind plain-HTTP requests; HTTPS is a tunnel whose
requests the proxy cannot see). `registries` stands for the package registries' hosts. A rule
without a port allows any port. Blank lines and `#` comments are ignored.

Whatever a name resolves to, the proxy connects only to the address it checked: loopback,
private, link-local and other non-public addresses are refused unless the host (name or
address) is named by a rule without a wildcard, under `open` too."""

from __future__ import annotations

from dataclasses import dataclass, field
from fnmatch import fnmatchcase

from django.core.exceptions import ValidationError
from django.db import models

from hooks.guard import IPAddress, why_not_public


class Egress(models.TextChoices):
    NONE = "none", "None"
    ALLOWLIST = "allowlist", "Allowlist"
    OPEN = "open", "Open (public addresses)"


REGISTRIES = (
    "pypi.org",
    "files.pythonhosted.org",
    "registry.npmjs.org",
    "registry.yarnpkg.com",
    "deb.debian.org",
    "security.debian.org",
    "proxy.golang.org",
    "sum.golang.org",
    "crates.io",
    "static.crates.io",
    "index.crates.io",
    "repo.maven.apache.org",
    "rubygems.org",
)
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


@dataclass(frozen=True)
class Rule:
    host: str  # lower case; may hold * and ? wildcards
    port: int | None = None
    methods: frozenset[str] = frozenset()  # empty: any

    def matches(self, host: str, port: int, method: str | None) -> bool:
        if self.port is not None and self.port != port:
            return False
        if method is not None and self.methods and method not in self.methods:
            return False
        return fnmatchcase(host.lower().rstrip("."), self.host)

    @property
    def exact(self) -> bool:
        return "*" not in self.host and "?" not in self.host


def parse_allowlist(text: str) -> list[Rule]:
    """The rules, or ValueError naming the line that is wrong."""
    rules: list[Rule] = []
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        if line == "registries":
            rules += [Rule(host) for host in REGISTRIES]
            continue
        words = line.split()
        if len(words) > 2:
            raise ValueError(f"line {number} ({raw.strip()!r}): write `[METHODS] host[:port]`")
        methods: frozenset[str] = frozenset()
        if len(words) == 2:
            methods = frozenset(m.strip().upper() for m in words[0].split(",") if m.strip())
            unknown = sorted(methods - METHODS)
            if unknown:
                raise ValueError(f"line {number}: unknown method {', '.join(unknown)}")
        rules.append(_host_rule(words[-1], number, methods))
    return rules


def validate_allowlist(text: str) -> None:
    """The model field's validator: the allowlist's first error, if any."""
    try:
        parse_allowlist(text)
    except ValueError as exc:
        raise ValidationError(str(exc)) from None


def _host_rule(text: str, number: int, methods: frozenset[str]) -> Rule:
    host, port = text.lower(), None
    if host.startswith("["):  # [::1]:8080
        inside, _, rest = host[1:].partition("]")
        host, port_text = inside, rest.removeprefix(":")
    elif host.count(":") == 1:
        host, port_text = host.split(":")
    else:
        port_text = ""
    if port_text:
        if not port_text.isdigit() or not 0 < int(port_text) < 65536:
            raise ValueError(f"line {number}: the port {port_text!r} is not from 1 to 65535")
        port = int(port_text)
    if not host or any(c in host for c in "/@ "):
        raise ValueError(f"line {number}: {text!r} is not a host name or address")
    return Rule(host.rstrip("."), port, methods)


@dataclass(frozen=True)
class Decision:
    allowed: bool
    reason: str = ""


@dataclass(frozen=True)
class Policy:
    mode: str = Egress.NONE
    rules: tuple[Rule, ...] = field(default_factory=tuple)

    @classmethod
    def of(cls, mode: str, allowlist: str) -> Policy:
        return cls(mode, tuple(parse_allowlist(allowlist)) if mode == Egress.ALLOWLIST else ())

    def describe(self) -> list[str]:
        """The rules as written, for the reproducibility card."""
        return [
            " ".join(
                ([",".join(sorted(r.methods))] if r.methods else [])
                + [f"{r.host}:{r.port}" if r.port else r.host]
            )
            for r in self.rules
        ]

    def decide(self, host: str, port: int, method: str | None = None) -> Decision:
        """May a connection (or, with `method`, a plain-HTTP request) go to host:port?"""
        if self.mode == Egress.OPEN:
            return Decision(True)
        if self.mode == Egress.NONE:
            return Decision(False, "this agent's egress policy is none")
        if any(rule.matches(host, port, method) for rule in self.rules):
            return Decision(True)
        what = f"{method} to {host}:{port}" if method else f"{host}:{port}"
        return Decision(False, f"{what} is not in the agent's allowlist")

    def check_address(self, host: str, address: IPAddress) -> Decision:
        """The address a name resolved to, before connecting."""
        reason = why_not_public(address)
        if not reason:
            return Decision(True)
        named = {host.lower().rstrip("."), str(address)}
        if any(rule.exact and rule.host in named for rule in self.rules):
            return Decision(True)
        return Decision(False, f"{host} resolves to {address}, {reason}, which no rule names")
