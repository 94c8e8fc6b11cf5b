"""Three test hosts on one machine: network namespaces with their own addresses,
host names, /tmp and working directory, joined by a bridge in a namespace of its own.

Host ``a`` is 10.213.0.1, ``b`` 10.213.0.2, ``c`` 10.213.0.3 (/24, interface ``eth0`` in
each, ``lo`` up); the bridge lives in the namespace ``sae-net``, so nothing is added to the
machine's own namespace, and no namespace has a route beyond 10.213.0.0/24: a packet to
any other address cannot leave. Every process of host X runs as

    ip netns exec sae-X unshare --mount --uts --propagation private sh -c '...' CMD

which gives it the host name ``sae-X``, its own ``/etc/hosts`` (the three hosts), its own
``/tmp`` (``<base>/X/tmp``) and working directory ``/srv`` (``<base>/X/work``, also its
``HOME``), and the checkout (the software, its ``.venv`` included) read-only, at its own
path (also when that path lies in the machine's ``/tmp``: it is mounted into the host's).
No local path is shared between hosts but that read-only software (and the JVM and the
Ivy cache, read as they are). The test process itself stays in the machine's namespace
and reads the hosts' files under ``<base>`` and their sockets in ``/proc/PID/net`` of an
anchor process (``sleep``) in each namespace.

On them, ``tests/netns_spark.py`` runs Spark, moto and the jobs, and
``tests/netns_observe.py`` records every socket and Ray's logs.

:func:`namespace_support` says why the kernel refuses (None when it does not);
:meth:`Hosts.up` removes the leftovers of a crashed run (namespaces named ``sae-*`` and
their processes) before it builds; :meth:`Hosts.down` stops every process in the
namespaces by pid and deletes them, also after a failure.
"""

from __future__ import annotations

import ipaddress
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Dict, Iterable, List, Optional, Sequence, Tuple

__all__ = ["Hosts", "namespace_support", "clean_leftovers", "root_links", "PREFIX", "SUBNET",
           "IFNAME", "ROOT", "VENV", "WORKDIR"]

#: Names of everything this harness creates (namespaces ``sae-a`` ... and ``sae-net``).
PREFIX = "sae-"
#: The hosts' network; nothing in it exists outside the namespaces this harness makes.
SUBNET = ipaddress.ip_network("10.213.0.0/24")
#: The interface name of every host (the same in each, like a fleet of identical machines).
IFNAME = "eth0"
NAMES = ("a", "b", "c")
BRIDGE_NS = PREFIX + "net"
#: The software every host reads (the checkout and its virtual environment), read-only.
ROOT = Path(__file__).resolve().parents[1]
VENV = Path(sys.prefix)
#: Where each host's working directory appears inside it.
WORKDIR = "/srv"

#: Where the checkout lies inside /tmp (``fresh/sparkae`` for ``/tmp/fresh/sparkae``), or
#: "" when it lies elsewhere.
IN_TMP = (os.path.relpath(ROOT.resolve(), "/tmp")
          if str(ROOT.resolve()).startswith("/tmp/") else "")

#: Run on host X (``sh -c _WRAP sh NAME DIR CHECKOUT IN_TMP CMD...``): its host name, its
#: working directory, its /etc/hosts, the checkout read-only, then its /tmp (last: DIR may
#: be under the machine's /tmp), and exec CMD there. A checkout inside /tmp is mounted at
#: the same place in the host's /tmp first (``DIR/tmp/IN_TMP``, carried over by the
#: recursive bind), so the host sees it where the machine does.
_WRAP = (f'hostname "$1" && mount --bind "$2/work" {WORKDIR} '
         '&& mount --bind "$2/hosts" /etc/hosts '
         '&& mount --bind "$3" "$3" && mount -o remount,bind,ro "$3" '
         '&& if [ -n "$4" ]; then mount --bind "$3" "$2/tmp/$4" '
         '&& mount -o remount,bind,ro "$2/tmp/$4"; fi '
         f'&& mount --rbind "$2/tmp" /tmp && cd {WORKDIR} && shift 4 && exec "$@"')


def _sh(*argv: str, check: bool = True, timeout: float = 30) -> subprocess.CompletedProcess:
    return subprocess.run(list(argv), capture_output=True, text=True, check=check,
                          timeout=timeout, stdin=subprocess.DEVNULL)


def namespace_support() -> Optional[str]:
    """Why this machine cannot host the test cluster (None when it can): not root, no
    iproute2 or util-linux, or the kernel refuses network or mount namespaces."""
    if os.geteuid() != 0:
        return "the multi-host tests create network namespaces and need root"
    for tool in ("ip", "unshare", "java"):
        if shutil.which(tool) is None:
            return f"'{tool}' is not installed (iproute2, util-linux and a JDK are needed)"
    if not os.path.isdir(WORKDIR):
        return f"{WORKDIR} does not exist (each host's working directory is mounted there)"
    root, venv = os.path.realpath(ROOT), os.path.realpath(VENV)
    if root == "/tmp":
        return "the checkout is /tmp itself, which each test host mounts privately"
    if (venv == "/tmp" or venv.startswith("/tmp/")) and not venv.startswith(root + "/"):
        return (f"the virtual environment lies under /tmp ({venv}) outside the checkout; "
                "each test host mounts /tmp privately and sees only the checkout there: "
                "put the environment inside the checkout or outside /tmp")
    probe = f"saeprobe-{os.getpid()}"   # not PREFIX: a run's clean-up must leave it alone
    try:
        made = _sh("ip", "netns", "add", probe, check=False)
        if made.returncode != 0:
            return f"the kernel refused a network namespace: ip netns add: {made.stderr.strip()}"
        tmp = tempfile.mkdtemp(prefix="sae-probe-")
        try:
            got = _sh("ip", "netns", "exec", probe, "unshare", "--mount", "--uts",
                      "--propagation", "private", "sh", "-c",
                      f'hostname sae-probe && mount --bind "{tmp}" /tmp && echo ok', check=False)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        if got.stdout.strip() != "ok":
            return ("the kernel refused a mount or UTS namespace in a network namespace: "
                    f"{(got.stderr or got.stdout).strip()}")
        return None
    finally:
        _sh("ip", "netns", "del", probe, check=False)


#: The lock file that lets one set of test hosts exist on the machine at a time.
LOCK_FILE = os.path.join(tempfile.gettempdir(), "sparkae-multihost.lock")


def _take_lock(timeout: float):
    import fcntl

    f = open(LOCK_FILE, "a")
    deadline = time.time() + timeout
    while True:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return f
        except BlockingIOError:
            if time.time() > deadline:
                f.close()
                raise RuntimeError(f"another multi-host test run holds {LOCK_FILE} for more "
                                   f"than {timeout:.0f} s")
            time.sleep(1)


def _no_ipv6_links(ns: str, device: str = "default") -> None:
    """No IPv6 on ``device`` (``default``: interfaces made later) in ``ns``: no link-local
    fe80:: addresses, so a host's only addresses are 127.0.0.1, ::1 and its 10.213.0.x."""
    _sh("ip", "netns", "exec", ns, "sh", "-c",
        f"echo 1 > /proc/sys/net/ipv6/conf/{device}/disable_ipv6")


def root_links() -> List[str]:
    """The interfaces of the machine's own network namespace (this process's)."""
    out = _sh("ip", "-o", "link", "show").stdout
    return sorted(line.split(":")[1].strip().split("@")[0] for line in out.splitlines())


def _netns_list() -> List[str]:
    out = _sh("ip", "netns", "list", check=False).stdout
    return [line.split()[0] for line in out.splitlines() if line.strip()]


def _netns_pids(ns: str) -> List[int]:
    out = _sh("ip", "netns", "pids", ns, check=False).stdout
    return [int(p) for p in out.split() if p.isdigit()]


def _kill_all(pids: Iterable[int], sig: int) -> None:
    for pid in pids:
        try:
            os.kill(pid, sig)
        except (ProcessLookupError, PermissionError):
            pass


def _stop_namespace(ns: str, grace: float = 5.0) -> None:
    """Stop every process in ``ns`` (SIGTERM, then SIGKILL) and wait until none is left."""
    pids = _netns_pids(ns)
    if pids:
        _kill_all(pids, signal.SIGTERM)
        deadline = time.time() + grace
        while time.time() < deadline and _netns_pids(ns):
            time.sleep(0.2)
    for _ in range(50):
        pids = _netns_pids(ns)
        if not pids:
            return
        _kill_all(pids, signal.SIGKILL)
        time.sleep(0.2)


def clean_leftovers() -> List[str]:
    """Stop the processes of, and delete, every namespace named ``sae-*`` (a previous run
    that crashed before its teardown). Returns the names removed."""
    gone = []
    for ns in _netns_list():
        if ns.startswith(PREFIX):
            _stop_namespace(ns, grace=1.0)
            _sh("ip", "netns", "del", ns, check=False)
            gone.append(ns)
    return gone


class Hosts:
    """The three hosts; see the module's docstring.

    Parameters
    ----------
    base : path
        A fresh directory for the hosts' disks (``<base>/<name>/{tmp,work}``) and logs
        (``<base>/logs``).
    """

    def __init__(self, base: os.PathLike) -> None:
        self.base = Path(base)
        self.names = NAMES
        self.procs: List[Tuple[str, subprocess.Popen]] = []
        self.anchors: Dict[str, subprocess.Popen] = {}
        self._logs: List[object] = []
        self.removed_leftovers: List[str] = []
        self._lock = None
        self.root_links_before: List[str] = []

    # -- names and addresses --
    def ns(self, host: str) -> str:
        return PREFIX + host

    def hostname(self, host: str) -> str:
        return PREFIX + host

    def addr(self, host: str) -> str:
        return str(SUBNET.network_address + 1 + self.names.index(host))

    def dir(self, host: str) -> Path:
        """The host's disk as the test process sees it (``tmp/`` and ``work/``)."""
        return self.base / host

    # -- life cycle --
    def up(self, lock_timeout: float = 1800) -> "Hosts":
        """Build the hosts (after removing leftovers of a crashed run); on failure, tear
        down what was built and raise. One set of hosts at a time on a machine: a second
        test run waits for the first's :meth:`down` (a lock file), so that its clean-up
        never removes the namespaces of a run in progress."""
        self._lock = _take_lock(lock_timeout)
        self.removed_leftovers = clean_leftovers()
        self.root_links_before = root_links()
        try:
            self._build()
        except BaseException:
            self.down()
            raise
        return self

    def _build(self) -> None:
        (self.base / "logs").mkdir(parents=True, exist_ok=True)
        hosts_file = "127.0.0.1 localhost\n::1 localhost ip6-localhost ip6-loopback\n" + "".join(
            f"{self.addr(h)} {self.hostname(h)}\n" for h in self.names)
        _sh("ip", "netns", "add", BRIDGE_NS)
        _no_ipv6_links(BRIDGE_NS)
        _sh("ip", "-n", BRIDGE_NS, "link", "add", "br0", "type", "bridge")
        _sh("ip", "-n", BRIDGE_NS, "link", "set", "lo", "up")
        _sh("ip", "-n", BRIDGE_NS, "link", "set", "br0", "up")
        for h in self.names:
            ns = self.ns(h)
            _sh("ip", "netns", "add", ns)
            _no_ipv6_links(ns)
            # the veth pair is made in the bridge's namespace, its peer created directly in
            # the host's: no interface ever exists in the machine's own namespace
            _sh("ip", "-n", BRIDGE_NS, "link", "add", f"v{h}", "type", "veth", "peer", "name",
                IFNAME, "netns", ns)
            _sh("ip", "-n", BRIDGE_NS, "link", "set", f"v{h}", "master", "br0", "up")
            _no_ipv6_links(ns, IFNAME)
            _sh("ip", "-n", ns, "link", "set", "lo", "up")
            _sh("ip", "-n", ns, "addr", "add", f"{self.addr(h)}/{SUBNET.prefixlen}", "dev", IFNAME)
            _sh("ip", "-n", ns, "link", "set", IFNAME, "up")
            d = self.dir(h)
            for sub in ("tmp", "work"):
                (d / sub).mkdir(parents=True, exist_ok=True)
            (d / "tmp").chmod(0o1777)
            if IN_TMP:       # where the checkout is mounted in the host's /tmp
                (d / "tmp" / IN_TMP).mkdir(parents=True, exist_ok=True)
            (d / "hosts").write_text(hosts_file)
            # an anchor in each namespace: /proc/<anchor>/net shows the namespace's sockets
            self.anchors[h] = subprocess.Popen(
                ["ip", "netns", "exec", ns, "sleep", "86400"], stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        # no host has a route beyond the hosts' network (Cluster.start proves they reach
        # each other: the workers register with the master, moto answers b)
        for h in self.names:
            routes = self.routes(h)
            if "default" in routes:
                raise RuntimeError(f"host {h} has a default route: {routes}")

    def down(self) -> None:
        """Stop every process on the hosts (by pid: process groups first, then whatever is
        left in each namespace), delete the namespaces (the bridge and veth pairs go with
        them). Safe to call twice and after a partial :meth:`up`."""
        for _, proc in reversed(self.procs):
            if proc.poll() is None:
                try:
                    os.killpg(proc.pid, signal.SIGTERM)
                except (ProcessLookupError, PermissionError):
                    pass
        deadline = time.time() + 15
        for _, proc in reversed(self.procs):
            try:
                proc.wait(timeout=max(0.1, deadline - time.time()))
            except subprocess.TimeoutExpired:
                try:
                    os.killpg(proc.pid, signal.SIGKILL)
                except (ProcessLookupError, PermissionError):
                    pass
        for h in self.names:
            if self.ns(h) in _netns_list():
                _stop_namespace(self.ns(h))
        for _, proc in self.procs:
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                pass
        for anchor in self.anchors.values():
            try:
                anchor.wait(timeout=10)
            except subprocess.TimeoutExpired:
                pass
        for f in self._logs:
            try:
                f.close()
            except OSError:
                pass
        self._logs.clear()
        for ns in [self.ns(h) for h in self.names] + [BRIDGE_NS]:
            if ns in _netns_list():
                _stop_namespace(ns, grace=1.0)
                _sh("ip", "netns", "del", ns, check=False)
        lock, self._lock = self._lock, None
        if lock is not None:
            lock.close()   # releases the flock

    def leftovers(self) -> List[str]:
        """Namespaces of this harness that still exist (none after :meth:`down`)."""
        return [ns for ns in _netns_list() if ns.startswith(PREFIX)]

    # -- processes --
    def env(self, host: str, extra: Optional[Dict[str, str]] = None) -> Dict[str, str]:
        """A host's environment: the virtual environment first on PATH, its own HOME, its
        address as SPARK_LOCAL_IP, gloo on its interface; nothing of this process's."""
        env = {
            "PATH": os.pathsep.join([str(VENV / "bin"), "/usr/local/sbin", "/usr/local/bin",
                                     "/usr/sbin", "/usr/bin", "/sbin", "/bin"]),
            "HOME": WORKDIR, "LANG": "C.UTF-8", "TMPDIR": "/tmp",
            "SPARK_HOME": _spark_home(), "SPARK_LOCAL_IP": self.addr(host),
            "SPARK_NO_DAEMONIZE": "1", "PYSPARK_PYTHON": str(VENV / "bin" / "python"),
            "PYSPARK_DRIVER_PYTHON": str(VENV / "bin" / "python"),
            "GLOO_SOCKET_IFNAME": IFNAME, "PYARROW_IGNORE_TIMEZONE": "1",
        }
        for key in ("JAVA_HOME",):
            if os.environ.get(key):
                env[key] = os.environ[key]
        env.update(extra or {})
        return env

    def command(self, host: str, argv: Sequence[str]) -> List[str]:
        """``argv`` wrapped to run on ``host`` (its namespaces and mounts)."""
        return ["ip", "netns", "exec", self.ns(host), "unshare", "--mount", "--uts",
                "--propagation", "private", "sh", "-c", _WRAP, "sh", self.hostname(host),
                str(self.dir(host)), str(ROOT), IN_TMP, *map(str, argv)]

    def start(self, host: str, name: str, argv: Sequence[str],
              env: Optional[Dict[str, str]] = None) -> subprocess.Popen:
        """Start ``argv`` on ``host`` in a process group of its own, its output in
        ``<base>/logs/<host>-<name>.log`` (:meth:`log`)."""
        log = open(self.log_path(host, name), "ab")
        self._logs.append(log)
        proc = subprocess.Popen(self.command(host, argv), env=env or self.env(host),
                                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                start_new_session=True)
        self.procs.append((host, proc))
        return proc

    def log_path(self, host: str, name: str) -> Path:
        return self.base / "logs" / f"{host}-{name}.log"

    def log(self, host: str, name: str) -> str:
        try:
            return self.log_path(host, name).read_text(errors="replace")
        except OSError:
            return ""

    def finish(self, proc: subprocess.Popen, timeout: float) -> int:
        """Wait for ``proc`` (from :meth:`start`); kill its process group on timeout."""
        try:
            return proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=30)
            raise

    def run(self, host: str, argv: Sequence[str], env: Optional[Dict[str, str]] = None,
            timeout: float = 120, check: bool = True) -> subprocess.CompletedProcess:
        """Run ``argv`` on ``host`` and wait; output captured."""
        proc = subprocess.run(self.command(host, argv), env=env or self.env(host),
                              capture_output=True, text=True, timeout=timeout,
                              stdin=subprocess.DEVNULL)
        if check and proc.returncode != 0:
            raise RuntimeError(f"on host {host}: {' '.join(map(str, argv))} exited "
                               f"{proc.returncode}:\n{proc.stdout[-3000:]}{proc.stderr[-3000:]}")
        return proc

    def http(self, host: str, url: str, method: str = "GET",
             data: Optional[bytes] = None) -> Tuple[int, bytes]:
        """An HTTP request made from ``host``: ``(status, body)`` (status 0: no answer)."""
        proc = subprocess.run(
            ["ip", "netns", "exec", self.ns(host), str(VENV / "bin" / "python"), "-c", _HTTP,
             url, method], input=data or b"", capture_output=True, timeout=60)
        if proc.returncode != 0:
            return 0, proc.stderr
        status, _, body = proc.stdout.partition(b"\n")
        return int(status), body

    def pids(self, host: str) -> List[int]:
        """Every process in ``host``'s network namespace (pids as this process sees them)."""
        return _netns_pids(self.ns(host))

    def sockets(self, host: str):
        """:func:`tests.netns_observe.read_sockets` of ``host``'s namespace."""
        from tests.netns_observe import read_sockets

        return read_sockets(self.anchors[host].pid)

    def routes(self, host: str) -> str:
        """``ip route`` of ``host`` (IPv4 and IPv6)."""
        return (_sh("ip", "-n", self.ns(host), "route", "show").stdout
                + _sh("ip", "-n", self.ns(host), "-6", "route", "show").stdout)

    def interfaces(self, host: str) -> List[str]:
        """Every address configured in ``host``'s namespace."""
        out = _sh("ip", "-n", self.ns(host), "-j", "addr", "show").stdout
        return [a["local"] for link in json.loads(out) for a in link.get("addr_info", [])]


_HTTP = """
import sys, urllib.request, urllib.error
data = sys.stdin.buffer.read()
req = urllib.request.Request(sys.argv[1], data=data if sys.argv[2] != "GET" else None,
                             method=sys.argv[2])
try:
    with urllib.request.urlopen(req, timeout=20) as r:
        status, body = r.status, r.read()
except urllib.error.HTTPError as e:
    status, body = e.code, e.read()
sys.stdout.buffer.write(str(status).encode() + b"\\n" + body)
"""


def _spark_home() -> str:
    import pyspark

    return os.path.dirname(pyspark.__file__)
