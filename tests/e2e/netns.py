"""A developer machine on a public block: a network namespace the test creates, for the external path.

`PublicLink` makes namespace NAME and a veth pair numbered from one public /24: this (the host)
side holds the gateway's address, the namespace side the developer machine's own address. The
real CLI runs in the namespace (`wrap(command)`), so when it connects to the gateway its own
address is inside the same block, which is what `gatewayInternalNetworks` requires (docs/deploy.md).
Deleting the namespace removes the veth pair with it; a pair left by a crashed run is removed first.
"""

from __future__ import annotations

import shutil
import subprocess


class NetnsError(RuntimeError):
    pass


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=15)
    if check and done.returncode != 0:
        raise NetnsError(f"ip {' '.join(args)}: {done.stderr.strip()}")
    return done


def available() -> str | None:
    """Why the namespace cannot be made here, or None."""
    if shutil.which("ip") is None:
        return "the `ip` command (iproute2) is not installed"
    probe = "claude-e2e-probe"
    _ip("netns", "del", probe, check=False)
    made = _ip("netns", "add", probe, check=False)
    if made.returncode != 0:
        return f"cannot create a network namespace: {made.stderr.strip()}"
    _ip("netns", "del", probe, check=False)
    return None


class PublicLink:
    """Namespace `name` linked to the host by a veth pair: host side `gateway_ip`, namespace side `client_ip`."""

    def __init__(self, name: str, gateway_ip: str, client_ip: str, prefix: int = 24) -> None:
        self.name, self.gateway_ip, self.client_ip, self.prefix = name, gateway_ip, client_ip, prefix
        self.host_side, self.ns_side = f"{name[:10]}-h", f"{name[:10]}-n"  # interface names: at most 15 bytes

    def __enter__(self) -> PublicLink:
        self._remove()
        try:
            _ip("netns", "add", self.name)
            _ip("link", "add", self.host_side, "type", "veth", "peer", "name", self.ns_side)
            _ip("link", "set", self.ns_side, "netns", self.name)
            _ip("addr", "add", f"{self.gateway_ip}/{self.prefix}", "dev", self.host_side)
            _ip("link", "set", self.host_side, "up")
            self.run("ip", "addr", "add", f"{self.client_ip}/{self.prefix}", "dev", self.ns_side)
            self.run("ip", "link", "set", self.ns_side, "up")
            self.run("ip", "link", "set", "lo", "up")
        except BaseException:
            self._remove()
            raise
        return self

    def wrap(self, command: list[str]) -> list[str]:
        """`command` run inside the namespace."""
        return ["ip", "netns", "exec", self.name, *command]

    def run(self, *command: str) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(self.wrap(list(command)), capture_output=True, text=True, timeout=15)
        if done.returncode != 0:
            raise NetnsError(f"in {self.name}: {' '.join(command)}: {done.stderr.strip()}")
        return done

    def _remove(self) -> None:
        _ip("netns", "del", self.name, check=False)
        _ip("link", "del", self.host_side, check=False)  # gone with the namespace, unless half made

    def __exit__(self, *exc: object) -> None:
        self._remove()
