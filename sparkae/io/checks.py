"""Driver-side checks of the locations a job or a fit writes, run before any Spark job.

A job must not start work whose result it cannot write, and must never write over the data
it reads. Local paths (``file:`` URIs included) get a probe file in their nearest existing
folder; object stores get a check of the credentials and the bucket, then a probe object.
"""

from __future__ import annotations

import os
import tempfile
import uuid
from typing import Iterable, Optional

from sparkae.io import backends, fs
from sparkae.io.uri import join, parse

__all__ = ["local_path", "check_writable", "check_not_input"]


def local_path(path: str) -> Optional[str]:
    """The absolute local path of ``path`` (``file:`` stripped), or None for other schemes."""
    uri = parse(path)
    return os.path.realpath(uri.path) if uri.is_local else None


def _check_local(path: str, local: str, what: str) -> None:
    probe = local
    while not os.path.exists(probe):
        parent = os.path.dirname(probe)
        if parent == probe:
            break
        probe = parent
    if not os.path.isdir(probe):
        raise ValueError(f"{what}: '{path}' cannot be written: '{probe}' is a file, not a "
                         "directory")
    try:
        with tempfile.NamedTemporaryFile(dir=probe, prefix=".sparkae-probe-"):
            pass
    except OSError as exc:
        raise ValueError(f"{what}: '{path}' cannot be written: {exc.strerror or exc} in "
                         f"'{probe}'") from None


def check_writable(path: str, what: str) -> None:
    """Raise a clear error when ``path`` cannot be created and written.

    Raises
    ------
    ValueError
        An unknown scheme, ``path`` or one of its ancestors is a file, the location is not
        writable, an S3 bucket that does not exist, or no S3 credentials where they are
        needed.
    """
    uri = parse(path, what)
    if uri.is_local:
        _check_local(path, uri.path, what)
        return
    if uri.scheme in ("s3a", "s3", "s3n"):
        _check_s3(uri.authority, path, what)
    if fs.isfile(path, what):
        raise ValueError(f"{what}: '{path}' cannot be written: it is a file, not a directory")
    probe = join(uri.text, f".sparkae-probe-{uuid.uuid4().hex[:8]}")
    try:
        fs.write_bytes(probe, b"", what)
        fs.delete(probe, what)
    except OSError as exc:
        raise ValueError(f"{what}: '{path}' cannot be written: {exc}") from None


def _check_s3(bucket: str, path: str, what: str) -> None:
    opts = fs.options()
    endpoint = backends.s3_setting(opts, bucket, "endpoint") or ""
    custom = endpoint and "amazonaws.com" not in endpoint
    anonymous = "Anonymous" in (backends.s3_setting(opts, bucket, "aws.credentials.provider") or "")
    if custom and not anonymous and not backends.has_s3_credentials(opts, bucket):
        raise ValueError(f"{what}: '{path}' (scheme s3a, endpoint {endpoint}) has no "
                         "credentials: set spark.hadoop.fs.s3a.access.key and "
                         "spark.hadoop.fs.s3a.secret.key, or AWS_ACCESS_KEY_ID and "
                         "AWS_SECRET_ACCESS_KEY")
    bucket_uri = f"s3a://{bucket}"
    try:
        found = fs.isdir(bucket_uri, what)
    except OSError as exc:
        raise ValueError(f"{what}: '{path}' cannot be reached: {exc}") from None
    if not found:
        raise ValueError(f"{what}: '{path}': the bucket '{bucket}' does not exist (or these "
                         f"credentials cannot see it) at "
                         f"{endpoint or 'AWS S3'}; create it or fix spark.hadoop.fs.s3a.endpoint")


def _inside(child: str, parent: str) -> bool:
    return child == parent or child.startswith(parent.rstrip("/") + "/")


def _norm(path: str) -> str:
    try:
        return local_path(path) or parse(path).text
    except ValueError:
        return path.rstrip("/")


def check_not_input(output: str, inputs: Iterable[Optional[str]], what: str) -> None:
    """Raise when ``output`` is, contains or lies inside one of the ``inputs``.

    Writing there would overwrite or delete the data the job is reading.
    """
    out = _norm(output)
    for src in inputs:
        if not src:
            continue
        inp = _norm(src)
        if _inside(out, inp) or _inside(inp, out):
            raise ValueError(f"{what}: '{output}' would overwrite the input '{src}'; write "
                             "the output somewhere else")
