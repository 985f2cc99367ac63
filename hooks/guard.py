"""The SSRF guard: a webhook may only reach an http(s) URL whose host resolves to public
addresses, so nobody can make AgentHub POST into its own network (a database's admin port, a
cloud metadata service at 169.254.169.254, localhost).

It is checked when a hook is made and again on every try, because DNS can change in between;
the try then connects to the very address checked here (hooks.transport), never resolving the
name a second time, so a DNS answer switched between check and connect cannot get past it.
"""

from __future__ import annotations

import ipaddress
import socket
from dataclasses import dataclass
from urllib.parse import unquote, urlsplit

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
SCHEMES = ("http", "https")
ALLOW_SETTING = "AGENTHUB_WEBHOOK_ALLOW_PRIVATE"


class Refused(ValueError):
    """The URL may not be called; the message says why and what would be accepted."""


class Unresolved(Refused):
    """The host name does not resolve (now: a later try may succeed)."""


@dataclass(frozen=True)
class Target:
    """Where to send: the URL's parts and the checked address to connect to."""

    scheme: str
    host: str
    port: int
    path: str
    address: str
    username: str = ""
    password: str = ""

    @property
    def host_header(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        default = 443 if self.scheme == "https" else 80
        return host if self.port == default else f"{host}:{self.port}"


def resolve(url: str, *, allow_private: bool) -> Target:
    """The URL's target with a checked address; raises Refused."""
    parts = urlsplit(url)
    if parts.scheme not in SCHEMES:
        raise Refused(f"Only http:// and https:// URLs are accepted, not {url!r}.")
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        raise Refused(f"The port of {url!r} is not a number from 1 to 65535.") from None
    host = parts.hostname
    if not host:
        raise Refused(f"{url!r} names no host.")
    addresses = _addresses(host, port)
    if not allow_private:
        for address in addresses:
            reason = why_not_public(address)
            if reason:
                where = f"{host} is" if host == str(address) else f"{host} resolves to {address},"
                raise Refused(
                    f"{where} {reason}: webhooks may only reach public addresses (a site "
                    f"admin can allow private ones with {ALLOW_SETTING})."
                )
    path = parts.path or "/"
    return Target(
        scheme=parts.scheme,
        host=host,
        port=port,
        path=f"{path}?{parts.query}" if parts.query else path,
        address=str(addresses[0]),
        username=unquote(parts.username or ""),
        password=unquote(parts.password or ""),
    )


def _addresses(host: str, port: int) -> list[IPAddress]:
    try:
        found = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        raise Unresolved(f"The host {host} does not resolve ({exc}).") from None
    # Every address is checked (a name may resolve to a public and a private one), the first
    # is used, as a client would.
    return list(dict.fromkeys(ipaddress.ip_address(info[4][0]) for info in found))


def why_not_public(address: IPAddress) -> str:
    """Why the address is not a public unicast one ("" when it is)."""
    if isinstance(address, ipaddress.IPv6Address):
        # An IPv4 address inside an IPv6 one reaches that IPv4 host.
        embedded = address.ipv4_mapped or address.sixtofour or (address.teredo or (None, None))[1]
        if embedded is not None:
            return why_not_public(embedded)
    checks = (
        (address.is_unspecified, "an unspecified address"),
        (address.is_loopback, "a loopback address"),
        (address.is_link_local, "a link-local address"),
        (address.is_multicast, "a multicast address"),
        (address.is_reserved, "a reserved address"),
        (address.is_private, "a private address"),
        (not address.is_global, "not a public address"),
    )
    return next((reason for failed, reason in checks if failed), "")
