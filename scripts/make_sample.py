"""Build the small real samples that ship inside minires (minires/data/samples/).

    python scripts/make_sample.py SOURCE [--out minires/data/samples]

SOURCE is a folder holding the official files:

    SOURCE/cifar-10-batches-bin/data_batch_1.bin, test_batch.bin   (CIFAR-10 binary version)
    SOURCE/<mnist folder>/train-images-idx3-ubyte[.gz], ... t10k-...  (MNIST idx files)

where <mnist folder> is any of mnist-idx, mnist, MNIST/raw, or SOURCE itself.

The samples are prefixes of the official files, in the official formats, so the package
reads them with the same code as the full datasets:

* CIFAR-10: the first 2000 records of data_batch_1.bin (train) and the first 1000 of
  test_batch.bin (test), byte for byte, gzip-compressed;
* MNIST: the first 2000 train and 1000 test images and labels, as idx files whose header
  count is rewritten to match, gzip-compressed.

The source files are checked against the official MD5s first, and the gzip files are
written without a timestamp, so running the script again gives identical bytes.
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import io
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)  # run from a checkout without installing

from minires.data import CIFAR10, MNIST  # noqa: E402
from minires.data.readers import CIFAR10_RECORD_SIZE, read_idx  # noqa: E402

# Canonical MD5s of the uncompressed official MNIST idx files (their .gz wrappers vary).
MNIST_RAW_MD5 = {
    "train-images-idx3-ubyte": "6bbc9ace898e44ae57da46a324031adb",
    "train-labels-idx1-ubyte": "a25bea736e30d166cdddb491f175f624",
    "t10k-images-idx3-ubyte": "2646ac647ad5339dbf082846283269ea",
    "t10k-labels-idx1-ubyte": "27ae3e4e09519cfbb04c329615203637",
}


def md5(data: bytes) -> str:
    return hashlib.md5(data, usedforsecurity=False).hexdigest()


def read_raw(path: str) -> bytes:
    with open(path, "rb") as f:
        raw = f.read()
    return gzip.decompress(raw) if raw[:2] == b"\x1f\x8b" else raw


def write_gzip(path: str, data: bytes) -> None:
    """Deterministic gzip (no name, mtime 0), written atomically."""
    buffer = io.BytesIO()
    with gzip.GzipFile(filename="", mode="wb", fileobj=buffer, compresslevel=9, mtime=0) as gz:
        gz.write(data)
    tmp = path + ".part"
    with open(tmp, "wb") as f:
        f.write(buffer.getvalue())
    os.replace(tmp, path)


def find_mnist(source: str) -> str:
    for folder in ("mnist-idx", "mnist", os.path.join("MNIST", "raw"), ""):
        folder = os.path.join(source, folder)
        names = os.listdir(folder) if os.path.isdir(folder) else []
        if any(n.startswith("train-images-idx3-ubyte") for n in names):
            return folder
    sys.exit(f"no MNIST idx files found under {source}")


def mnist_file(folder: str, name: str) -> str:
    for path in (os.path.join(folder, name), os.path.join(folder, name + ".gz")):
        if os.path.isfile(path):
            return path
    sys.exit(f"missing {name}[.gz] in {folder}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("source", help="folder holding cifar-10-batches-bin/ and the MNIST files")
    parser.add_argument("--out", default=os.path.join(ROOT, "minires", "data", "samples"))
    args = parser.parse_args()
    rows = []  # (sample file, source file, records, md5 of the uncompressed sample)

    # CIFAR-10: a prefix of whole records is itself a valid binary-version file.
    cifar_out = os.path.join(args.out, CIFAR10.sample_folder)
    os.makedirs(cifar_out, exist_ok=True)
    official = dict(CIFAR10.train_list + CIFAR10.test_list)
    for sample_name, count in CIFAR10.sample_train + CIFAR10.sample_test:
        source_name = sample_name.removesuffix(".gz")
        path = os.path.join(args.source, CIFAR10.base_folder, source_name)
        raw = read_raw(path)
        if md5(raw) != official[source_name]:
            sys.exit(f"{path} has MD5 {md5(raw)}, not the official {official[source_name]}")
        data = raw[: count * CIFAR10_RECORD_SIZE]
        write_gzip(os.path.join(cifar_out, sample_name), data)
        rows.append((f"cifar10/{sample_name}", f"{source_name} (CIFAR-10 binary version)",
                     f"records 0-{count - 1}", md5(data)))

    # MNIST: keep the first `count` items and rewrite the count in the idx header.
    mnist_in = find_mnist(args.source)
    mnist_out = os.path.join(args.out, MNIST.sample_folder)
    os.makedirs(mnist_out, exist_ok=True)
    for split, names in MNIST.split_files.items():
        count = MNIST.sample_sizes[split]
        for name in names:
            path = mnist_file(mnist_in, name)
            raw = read_raw(path)
            if md5(raw) != MNIST_RAW_MD5[name]:
                sys.exit(f"{path} (uncompressed) has MD5 {md5(raw)}, not {MNIST_RAW_MD5[name]}")
            array = read_idx(path)  # validates the header against the file size
            ndim = array.ndim
            item = int(array[0].size)
            header = bytearray(raw[: 4 + 4 * ndim])
            header[4:8] = count.to_bytes(4, "big")
            data = bytes(header) + raw[4 + 4 * ndim: 4 + 4 * ndim + count * item]
            write_gzip(os.path.join(mnist_out, name + ".gz"), data)
            rows.append((f"mnist/{name}.gz", f"{name} (MNIST)", f"items 0-{count - 1}",
                         md5(data)))

    # Read them back through the package's own readers: the samples must load.
    for train in (True, False):
        for cls in (CIFAR10, MNIST):
            ds = cls(train=train, sample=True)
            print(f"{ds!r}: classes present {sorted(set(ds.targets.tolist()))}")

    write_readme(args.out, rows)
    for sample, *_ in rows:
        print(f"{os.path.getsize(os.path.join(args.out, sample)):>9} bytes  {sample}")


def write_readme(out: str, rows) -> None:
    table = "\n".join(f"| `{s}` | `{src}` | {what} | `{h}` |" for s, src, what, h in rows)
    text = f"""# minires data samples

Small slices of the real datasets, shipped inside the package so the quickstart, the
tests and the tutorials run offline: `CIFAR10(sample=True)`, `MNIST(sample=True)`,
`get_dataset("cifar10-sample")`, `get_dataset("mnist-sample")`.

They are prefixes of the official files, in the official formats, gzip-compressed, and
the package reads them with the same code as the full datasets:

* **CIFAR-10** (binary version, 3073-byte records: 1 label byte, then the red, green and
  blue 32x32 planes): the first 2000 records of `data_batch_1.bin` (train) and the
  first 1000 records of `test_batch.bin` (test), byte for byte.
* **MNIST** (idx format): the first 2000 images and labels of `train-images-idx3-ubyte` /
  `train-labels-idx1-ubyte` (train) and the first 1000 of `t10k-images-idx3-ubyte` /
  `t10k-labels-idx1-ubyte` (test); only the item count in each idx header is changed.

| file | taken from | which | MD5 of the uncompressed file |
|---|---|---|---|
{table}

CIFAR-10: Alex Krizhevsky, *Learning Multiple Layers of Features from Tiny Images*,
2009 (https://www.cs.toronto.edu/~kriz/cifar.html). MNIST: Yann LeCun, Corinna Cortes
and Christopher J.C. Burges (http://yann.lecun.com/exdb/mnist/).

Rebuilt by `scripts/make_sample.py SOURCE`, where SOURCE holds the official files; the
script checks their MD5s first and writes byte-identical output every time.
"""
    with open(os.path.join(out, "README.md"), "w") as f:
        f.write(text)


if __name__ == "__main__":
    main()
