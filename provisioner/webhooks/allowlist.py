"""Which hosts a webhook may target: `PROVISIONER_WEBHOOK_ALLOWED_HOSTS`.

A webhook must not become a way into the service's own network. Public addresses are allowed;
loopback, private, link-local, unique-local, multicast, unspecified and other non-global
addresses are refused unless the host name, the address or a CIDR range containing it is listed.
The check covers every address a name resolves to, and it is made twice: when the webhook is
created and again before each delivery, whose connection then goes to the address that was just
checked (so a name that re-resolves to an internal address between the check and the connection
— DNS rebinding — gains nothing).
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final
from urllib.parse import SplitResult, urlsplit

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
# host, port → the addresses it resolves to.
Resolver = Callable[[str, int], list[str]]

_SCHEMES: Final = {"http": 80, "https": 443}


class HostRefusedError(ValueError):
    """The URL may not be used as a webhook target; the message says why (no secrets in it)."""


@dataclass(frozen=True)
class Target:
    """A checked URL: where to connect (`address`) and what to ask for there."""

    url: str
    scheme: str
    host: str  # as written in the URL, lower-cased (no brackets)
    port: int
    address: str  # the checked address the connection goes to

    @property
    def connect_url(self) -> str:
        """The URL with the checked address in place of the host name."""
        parts = urlsplit(self.url)
        host = f"[{self.address}]" if ":" in self.address else self.address
        netloc = f"{host}:{self.port}"
        return parts._replace(netloc=netloc).geturl()

    @property
    def host_header(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return host if _SCHEMES[self.scheme] == self.port else f"{host}:{self.port}"


def resolve(host: str, port: int) -> list[str]:
    """The system resolver (blocking: the dispatcher calls `check` in a thread)."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP)
    addresses: list[str] = []
    for _family, _type, _proto, _name, sockaddr in infos:
        address = str(sockaddr[0])
        if address not in addresses:
            addresses.append(address)
    return addresses


def is_public(address: IPAddress) -> bool:
    """Whether an address is reachable on the public internet (and so needs no listing)."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return is_public(address.ipv4_mapped)
    return not (
        address.is_loopback
        or address.is_private
        or address.is_link_local
        or address.is_multicast
        or address.is_unspecified
        or address.is_reserved
        or not address.is_global
    )


@dataclass(frozen=True)
class AllowList:
    names: frozenset[str]
    networks: tuple[IPNetwork, ...]

    @classmethod
    def parse(cls, text: str) -> AllowList:
        """Parse the comma-separated setting; a malformed entry raises ValueError naming it."""
        names: set[str] = set()
        networks: list[IPNetwork] = []
        for raw in text.split(","):
            entry = raw.strip().lower()
            if not entry:
                continue
            try:
                if "/" in entry:
                    networks.append(ipaddress.ip_network(entry, strict=False))
                else:
                    networks.append(ipaddress.ip_network(ipaddress.ip_address(entry.strip("[]"))))
                continue
            except ValueError:
                if "/" in entry or ":" in entry or not _is_host_name(entry):
                    raise ValueError(
                        f"webhook allowed hosts: {entry!r} is not a host name, address or CIDR"
                    ) from None
            names.add(entry.rstrip("."))
        return cls(frozenset(names), tuple(networks))

    def allows_address(self, address: IPAddress) -> bool:
        candidates: list[IPAddress] = [address]
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
            candidates.append(address.ipv4_mapped)
        return any(
            candidate.version == network.version and candidate in network
            for candidate in candidates
            for network in self.networks
        )

    def check(self, url: str, resolver: Resolver | None = None) -> Target:
        """Resolve and check a webhook URL; raises HostRefusedError saying why it is refused."""
        parts = parse_url(url)
        host = (parts.hostname or "").lower().rstrip(".")
        port = parts.port or _SCHEMES[parts.scheme]
        listed_name = host in self.names
        try:
            literal: IPAddress | None = ipaddress.ip_address(host)
        except ValueError:
            literal = None
        if literal is not None:
            addresses = [str(literal)]
        else:
            try:
                # Looked up at call time, so that tests can stand in for the DNS.
                addresses = (resolver or resolve)(host, port)
            except (OSError, UnicodeError) as error:
                raise HostRefusedError(f"host {host!r} does not resolve") from error
            if not addresses:
                raise HostRefusedError(f"host {host!r} does not resolve")
        for text in addresses:
            address = ipaddress.ip_address(text.split("%", 1)[0])
            if listed_name or is_public(address) or self.allows_address(address):
                continue
            where = "" if literal is not None else f"host {host!r} resolves to {address}: "
            raise HostRefusedError(
                f"{where}{address} is not a public address and is not in "
                "PROVISIONER_WEBHOOK_ALLOWED_HOSTS"
            )
        return Target(
            url=url, scheme=parts.scheme, host=host, port=port, address=addresses[0].split("%")[0]
        )


def parse_url(url: str) -> SplitResult:
    """The URL's parts if it can be a webhook target at all (http or https, a host, no
    credentials in it); raises HostRefusedError otherwise."""
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError for a bad port
    except ValueError as error:
        raise HostRefusedError("not a valid URL") from error
    if parts.scheme not in _SCHEMES:
        raise HostRefusedError("must be an http:// or https:// URL")
    # urlsplit silently drops tabs and line breaks: a URL holding them is refused instead.
    if not url.isprintable() or any(character.isspace() for character in url):
        raise HostRefusedError("must not contain spaces or control characters")
    if not parts.hostname:
        raise HostRefusedError("must name a host")
    if parts.username is not None or parts.password is not None:
        raise HostRefusedError("must not carry credentials (the secret signs each delivery)")
    if parts.fragment:
        raise HostRefusedError("must not have a fragment")
    return parts


def _is_host_name(name: str) -> bool:
    labels = name.rstrip(".").split(".")
    return len(name) <= 253 and all(
        0 < len(label) <= 63
        and label[0] != "-"
        and label[-1] != "-"
        and all(c.isascii() and (c.isalnum() or c == "-") for c in label)
        for label in labels
    )
