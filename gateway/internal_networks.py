"""`gatewayInternalNetworks`: the managed-settings key that lets Claude Code's /login reach a
gateway on a public address.

Claude Code refuses a gateway host that resolves to a public address ("gateway host resolved
to a public address") unless the machine's admin-controlled managed settings list the public
IPv4 block(s) the organization's network is numbered from. The rules below are the client's,
read from the Claude Code 2.1.333 binary (docs/deploy.md, "External mode" quotes them):

- `validate()` is its settings check: a list of strings, each `first-address/prefix` with the
  first address aligned to the prefix, /8 to /32, none overlapping private space, the
  documentation ranges, the VPN/NAT64 ranges or reserved space (the lists below), at most 4
  distinct blocks, pairwise disjoint. The error texts are the client's.
- At connect time the client requires, for the block in force, BOTH the gateway's resolved
  address AND this machine's own address on the connection to lie inside it, over a direct
  connection (no HTTP proxy). So a block must hold the developer machines' addresses too:
  the gateway's address alone (/32) is always refused with "this machine is connecting
  from …, outside it". `narrowest_block()` therefore covers the gateway address(es) and the
  developer networks together.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Sequence

# The client's tables (2.1.333), in its order; its messages depend on which list a range is in.
PRIVATE = ["10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "127.0.0.0/8", "169.254.0.0/16", "100.64.0.0/10"]
DOCUMENTATION = ["192.0.2.0/24", "198.51.100.0/24", "203.0.113.0/24"]
LOCAL_USE = ["198.18.0.0/15", "192.0.0.0/24", *DOCUMENTATION]  # "which VPN and NAT64 clients use locally"
RESERVED = ["0.0.0.0/8", "192.88.99.0/24", "224.0.0.0/4"]
MIN_PREFIX = 8
MAX_BLOCKS = 4


class NetworksError(ValueError):
    """A list the client would refuse; the message is the client's, plus what to do."""


def _err(detail: str) -> NetworksError:
    return NetworksError(f"gatewayInternalNetworks in managed settings {detail}.")


def _block(entry: str) -> ipaddress.IPv4Network:
    text = entry.strip()
    address, _, prefix_text = text.partition("/")
    bad = _err(
        f'entry "{text}" is not an IPv4 block written as first-address/prefix, /{MIN_PREFIX} to /32 '
        "(like 203.0.113.0/24, but your own)"
    )
    try:
        first = ipaddress.IPv4Address(address)
        prefix = int(prefix_text) if prefix_text.isdigit() else -1
        block = ipaddress.IPv4Network(f"{first}/{prefix}", strict=True)
    except ValueError:
        raise bad from None
    if prefix < MIN_PREFIX:
        raise bad
    return block


def _overlaps(a: ipaddress.IPv4Network, b: ipaddress.IPv4Network) -> bool:
    return a.network_address in b or b.network_address in a


def validate(entries: object) -> list[str]:
    """The blocks as the client normalises them, or NetworksError with the client's reason."""
    if not isinstance(entries, list) or not all(isinstance(e, str) for e in entries):
        raise _err("is not a list of CIDR strings; sign-in is refused until it is fixed")
    blocks: list[str] = []
    for entry in entries:
        block = _block(entry)
        text = entry.strip()
        for special in [*PRIVATE, *LOCAL_USE, *RESERVED]:
            if not _overlaps(block, ipaddress.IPv4Network(special)):
                continue
            if special in PRIVATE:
                raise _err(
                    f'entry "{text}" overlaps private address space ({special}), where /login accepts a gateway '
                    "without this key; declare only the public block your network is numbered from"
                )
            if special in DOCUMENTATION:
                raise _err(
                    f'entry "{text}" overlaps {special}, a documentation example range that is no one\'s network'
                )
            if special in RESERVED:
                raise _err(f'entry "{text}" overlaps {special}, reserved address space no network is numbered from')
            raise _err(f'entry "{text}" overlaps {special}, which VPN and NAT64 clients use locally')
        if str(block) not in blocks:
            blocks.append(str(block))
    if len(blocks) > MAX_BLOCKS:
        raise _err(f"lists {len(blocks)} blocks; at most {MAX_BLOCKS} are accepted")
    for i, a in enumerate(blocks):
        for b in blocks[i + 1 :]:
            if _overlaps(ipaddress.IPv4Network(a), ipaddress.IPv4Network(b)):
                raise _err(f'entries "{a}" and "{b}" overlap; list disjoint blocks')
    return blocks


def is_private(address: str) -> bool:
    """Where /login accepts a gateway without the key (the client's private list, IPv4)."""
    ip = ipaddress.IPv4Address(address)
    return any(ip in ipaddress.IPv4Network(p) for p in PRIVATE)


def inside(address: str, blocks: Iterable[str]) -> bool:
    ip = ipaddress.IPv4Address(address)
    return any(ip in ipaddress.IPv4Network(b) for b in blocks)


def narrowest_block(gateway_addresses: Sequence[str], developer_networks: Sequence[str] = ()) -> str:
    """The smallest single IPv4 block holding every gateway address and developer network
    (/32 for one address and nothing else)."""
    if not gateway_addresses:
        raise NetworksError("no gateway address given")
    nets = [ipaddress.IPv4Network(f"{a}/32") for a in gateway_addresses]
    nets += [ipaddress.IPv4Network(n.strip(), strict=False) for n in developer_networks]
    first = min(int(n.network_address) for n in nets)
    last = max(int(n.broadcast_address) for n in nets)
    prefix = 32
    while prefix > 0 and (first >> (32 - prefix)) != (last >> (32 - prefix)):
        prefix -= 1
    return str(ipaddress.IPv4Network((first, prefix), strict=False))
