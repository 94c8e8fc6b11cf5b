"""moto's standalone S3 server on 127.0.0.1, for tests of real S3 clients (S3A, pyarrow).

:class:`MotoServer` starts ``python -m moto.server -H 127.0.0.1 -p PORT`` as a subprocess in
its own session, waits until it answers HTTP, and stops it by pid (terminate, then kill).
:func:`create_bucket` makes a bucket with a plain HTTP PUT (moto checks no signatures).
"""

from __future__ import annotations

import logging
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from typing import IO, List, Optional

__all__ = ["MotoServer", "create_bucket", "free_port", "moto_available", "stop_process"]

log = logging.getLogger(__name__)

HOST = "127.0.0.1"


def moto_available() -> bool:
    """Whether moto's server (``moto[server]``: moto, flask, flask-cors) can be imported."""
    try:
        import flask  # noqa: F401
        import flask_cors  # noqa: F401
        import moto.server  # noqa: F401
    except ImportError:
        return False
    return True


def stop_process(proc: Optional[subprocess.Popen], grace: float) -> None:
    """Stop a server started by a test, by its pid: terminate, wait ``grace`` seconds, then
    kill if it is still there."""
    if proc is not None and proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


def free_port() -> int:
    """A TCP port free on 127.0.0.1 at the time of the call."""
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def _answers(url: str) -> bool:
    """Whether an HTTP GET of ``url`` gets any HTTP answer (an error status counts)."""
    try:
        with urllib.request.urlopen(url, timeout=2):
            return True
    except urllib.error.HTTPError:
        return True
    except OSError:
        return False


def create_bucket(endpoint: str, name: str) -> None:
    """Create the bucket ``name`` with an HTTP PUT to ``endpoint`` (path-style address).

    Parameters
    ----------
    endpoint : str
        The server's URL, e.g. ``http://127.0.0.1:5000``.
    name : str
        The bucket name.

    Raises
    ------
    urllib.error.HTTPError
        The server refused (moto answers 409 for a bucket that exists already).
    """
    request = urllib.request.Request(f"{endpoint}/{name}", data=b"", method="PUT")
    with urllib.request.urlopen(request, timeout=10) as response:
        response.read()


class MotoServer:
    """moto's S3-compatible server on 127.0.0.1, started and stopped by pid.

    Parameters
    ----------
    port : int, optional
        The port to listen on; a free one by default.
    start_timeout : float
        Seconds to wait for the server's first HTTP answer.

    Attributes
    ----------
    port : int
        The listening port.
    endpoint : str
        ``http://127.0.0.1:PORT``.
    start_seconds : float or None
        How long the last :meth:`start` took until the first answer.
    """

    def __init__(self, port: Optional[int] = None, start_timeout: float = 60.0) -> None:
        self.port = port or free_port()
        self.endpoint = f"http://{HOST}:{self.port}"
        self.start_timeout = start_timeout
        self.start_seconds: Optional[float] = None
        self._proc: Optional[subprocess.Popen] = None
        self._log: Optional[IO[bytes]] = None

    def command(self) -> List[str]:
        """The command line of the server."""
        return [sys.executable, "-m", "moto.server", "-H", HOST, "-p", str(self.port)]

    def start(self) -> "MotoServer":
        """Start the server and wait until it answers; returns ``self``.

        Raises
        ------
        RuntimeError
            The server exited or did not answer within ``start_timeout`` seconds (its
            output is in the message).
        """
        self._log = tempfile.TemporaryFile()
        env = dict(os.environ)
        env.pop("MOTO_PORT", None)
        began = time.monotonic()
        self._proc = subprocess.Popen(self.command(), stdout=self._log,
                                      stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                      env=env, start_new_session=True)
        deadline = began + self.start_timeout
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                break
            if _answers(self.endpoint + "/"):
                self.start_seconds = time.monotonic() - began
                log.info("moto server on %s answered after %.2f s (pid %d)", self.endpoint,
                         self.start_seconds, self._proc.pid)
                return self
            time.sleep(0.1)
        output = self.output()
        self.stop()
        raise RuntimeError(f"moto's server did not answer on {self.endpoint} within "
                           f"{self.start_timeout:.0f} s:\n{output[-3000:]}")

    def output(self) -> str:
        """What the server printed so far."""
        if self._log is None:
            return ""
        self._log.flush()
        self._log.seek(0)
        return self._log.read().decode("utf-8", "replace")

    def stop(self) -> None:
        """Stop the server by its pid: terminate, wait, then kill if it is still there."""
        proc, self._proc = self._proc, None
        stop_process(proc, 10)
        if self._log is not None:
            self._log.close()
            self._log = None

    def bucket(self, name: str) -> str:
        """Create the bucket ``name``; returns the name."""
        create_bucket(self.endpoint, name)
        return name

    def __enter__(self) -> "MotoServer":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
