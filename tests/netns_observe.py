"""What the test hosts of ``tests/netns_cluster.py`` do on the network: every TCP/UDP socket
of each namespace, read from ``/proc/PID/net`` of a process in it (local and remote
addresses, listeners and their owners), and Ray's logs, copied from the hosts' private
``/tmp`` while Ray runs; with the checks: :func:`allowed` and :func:`addresses_in`.
"""

from __future__ import annotations

import ipaddress
import json
import os
import re
import shutil
import threading
from pathlib import Path
from typing import Dict, Iterable, List, Tuple

from tests.netns_cluster import SUBNET, Hosts

__all__ = ["Observer", "read_sockets", "socket_owner", "allowed", "addresses_in"]

_TCP_STATES = {"01": "ESTABLISHED", "02": "SYN_SENT", "03": "SYN_RECV", "04": "FIN_WAIT1",
               "05": "FIN_WAIT2", "06": "TIME_WAIT", "07": "CLOSE", "08": "CLOSE_WAIT",
               "09": "LAST_ACK", "0A": "LISTEN", "0B": "CLOSING"}


def _address(hexaddr: str) -> Tuple[str, int]:
    addr_hex, port_hex = hexaddr.split(":")
    raw = bytes.fromhex(addr_hex)
    if len(raw) == 4:
        ip = str(ipaddress.IPv4Address(raw[::-1]))
    else:
        words = b"".join(raw[i:i + 4][::-1] for i in range(0, 16, 4))
        v6 = ipaddress.IPv6Address(words)
        ip = str(v6.ipv4_mapped) if v6.ipv4_mapped is not None else str(v6)
    return ip, int(port_hex, 16)


def read_sockets(pid: int) -> List[Tuple[str, str, int, str, int, str]]:
    """Every TCP and UDP socket of ``pid``'s network namespace: ``(proto, local ip, local
    port, remote ip, remote port, state)`` (IPv4-mapped IPv6 addresses as IPv4)."""
    out = []
    for proto in ("tcp", "tcp6", "udp", "udp6"):
        try:
            lines = Path(f"/proc/{pid}/net/{proto}").read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            parts = line.split()
            if len(parts) < 4:
                continue
            lip, lport = _address(parts[1])
            rip, rport = _address(parts[2])
            state = _TCP_STATES.get(parts[3], parts[3]) if proto.startswith("tcp") else "UDP"
            out.append((proto.rstrip("6"), lip, lport, rip, rport, state))
            inodes[out[-1]] = parts[9] if len(parts) > 9 else ""
    return out


#: socket -> inode of the last :func:`read_sockets` (to find a socket's process).
inodes: Dict[Tuple, str] = {}


def socket_owner(pids: Iterable[int], inode: str) -> str:
    """``pid: command line`` of the process among ``pids`` that holds socket ``inode``."""
    want = f"socket:[{inode}]"
    for pid in pids:
        try:
            fds = os.listdir(f"/proc/{pid}/fd")
        except OSError:
            continue
        for fd in fds:
            try:
                if os.readlink(f"/proc/{pid}/fd/{fd}") == want:
                    with open(f"/proc/{pid}/cmdline", "rb") as f:
                        cmd = f.read().replace(b"\0", b" ").decode(errors="replace")
                    return f"{pid}: {cmd[:300]}"
            except OSError:
                continue
    return "?"


def allowed(ip: str) -> bool:
    """Loopback, the hosts' network, or the unspecified address (a wildcard bind inside a
    namespace whose only addresses are loopback and its 10.213.0.x)."""
    a = ipaddress.ip_address(ip)
    return a.is_loopback or a.is_unspecified or (a.version == 4 and a in SUBNET)



class Observer:
    """Samples, every ``interval`` seconds until :meth:`stop`: each host's sockets (local
    and remote addresses of every TCP/UDP socket) and Ray's logs (copied from the hosts'
    ``/tmp/ray*`` session directories into ``<base>/ray-logs/<host>/``, since Ray on Spark
    deletes its temporary directories when it shuts down).
    """

    def __init__(self, hosts: Hosts, interval: float = 0.5) -> None:
        self.hosts, self.interval = hosts, interval
        self.sockets: Dict[str, set] = {h: set() for h in hosts.names}
        self.ray_logs = hosts.base / "ray-logs"
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="netns-observer", daemon=True)
        self._copied: Dict[Path, Tuple[int, float]] = {}
        self.samples = 0
        self.errors: List[str] = []
        #: ``host -> {socket: owner}`` of the listeners on the unspecified address
        self.wildcard: Dict[str, Dict[Tuple, str]] = {h: {} for h in hosts.names}

    def start(self) -> "Observer":
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=30)
        self.sample()

    def _loop(self) -> None:
        while not self._stop.is_set():
            self.sample()
            self._stop.wait(self.interval)

    def sample(self) -> None:
        for h in self.hosts.names:
            try:
                if h in self.hosts.anchors:
                    socks = set(self.hosts.sockets(h))
                    for s in socks - self.sockets[h]:
                        if s[5] == "LISTEN" and ipaddress.ip_address(s[1]).is_unspecified:
                            self.wildcard[h][s] = socket_owner(self.hosts.pids(h),
                                                               inodes.get(s, ""))
                    self.sockets[h] |= socks
                self._copy_ray_logs(h)
            except Exception as exc:  # noqa: BLE001 - keep sampling; the tests see the errors
                self.errors.append(f"{h}: {type(exc).__name__}: {exc}")
        self.samples += 1

    def _copy_ray_logs(self, host: str) -> None:
        tmp = self.hosts.dir(host) / "tmp"
        for logs in list(tmp.glob("ray*/session_*/logs")):
            try:
                found = list(logs.rglob("*"))
            except OSError:   # the session's directory went away (Ray stopped): copied so far
                continue
            for src in found:
                try:
                    st = src.stat()
                except OSError:
                    continue
                if not src.is_file() or self._copied.get(src) == (st.st_size, st.st_mtime):
                    continue
                dest = self.ray_logs / host / src.relative_to(tmp)
                dest.parent.mkdir(parents=True, exist_ok=True)
                try:
                    shutil.copyfile(src, dest)
                except OSError:
                    continue
                self._copied[src] = (st.st_size, st.st_mtime)

    def dump(self, path: os.PathLike) -> None:
        """Write what was seen (sockets per host) as JSON, for a look after the run."""
        Path(path).write_text(json.dumps({
            "sockets": {h: sorted(map(list, s)) for h, s in self.sockets.items()},
            "wildcard": {h: {" ".join(map(str, k)): v for k, v in w.items()}
                         for h, w in self.wildcard.items()}}, indent=1))

    # -- checks --
    def outside(self) -> List[Tuple]:
        """Sockets seen with a local or remote address beyond loopback and the hosts'."""
        bad = []
        for h, socks in self.sockets.items():
            for s in socks:
                _, lip, _, rip, _, _ = s
                if not (allowed(lip) and allowed(rip)):
                    bad.append((h,) + s)
        return sorted(bad)

    def listeners(self) -> Dict[str, set]:
        """``host -> {(ip, port)}`` of the TCP listeners seen."""
        return {h: {(s[1], s[2]) for s in socks if s[0] == "tcp" and s[5] == "LISTEN"}
                for h, socks in self.sockets.items()}

    def connections(self) -> Dict[str, set]:
        """``host -> {(local ip, remote ip)}`` of the TCP connections seen."""
        return {h: {(s[1], s[3]) for s in socks if s[0] == "tcp" and s[5] != "LISTEN"}
                for h, socks in self.sockets.items()}


#: An IPv4 address in a log line (not part of a longer dotted number such as a version).
IPV4 = re.compile(r"(?<![\d.])(\d{1,3}\.\d{1,3}\.\d{1,3}\.\d{1,3})(?![\d.]*\d)")
#: An IPv6 address in a log line (``::`` compressed or 8 groups; not inside a word, so that
#: C++ names such as ``ray::rpc`` do not count).
IPV6 = re.compile(r"(?<![\w:.])([0-9A-Fa-f:]*::[0-9A-Fa-f:]*(?:\d+\.\d+\.\d+\.\d+)?"
                  r"|(?:[0-9A-Fa-f]{1,4}:){7}[0-9A-Fa-f]{1,4})(?![\w:]|\.\d)")


def addresses_in(text: str) -> set:
    """The IPv4 and IPv6 addresses written in ``text`` (IPv4-mapped ones as IPv4)."""
    out = set()
    for m in IPV4.finditer(text):
        try:
            out.add(str(ipaddress.IPv4Address(m.group(1))))
        except ValueError:
            pass
    for m in IPV6.finditer(text):
        try:
            v6 = ipaddress.IPv6Address(m.group(1))
        except ValueError:
            continue
        out.add(str(v6.ipv4_mapped) if v6.ipv4_mapped is not None else str(v6))
    return out
