"""Checks that CPython + NumPy load the files written by cider-data's writers.

    /tmp/np1/bin/python check_rust_written.py   # NumPy 1.26
    /tmp/np2/bin/python check_rust_written.py   # NumPy 2.x

`rust_written.pkl` is `pickle_write::to_bytes(&sample())` (see the `sample` test helper in
crates/cider-data/src/pickle_write.rs); the two .npy files are `npy::to_bytes` of two of its arrays.
The script rebuilds the expected value independently and exits non-zero on any difference.
"""

import math
import os
import pickle
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))


def expected():
    train = {
        "audio": (np.arange(12, dtype=np.float32) / 4.0).reshape(2, 3, 2),
        "ids": np.array([[101, -5], [2**40, 0]], dtype=np.int64),
        "mask": np.array([True, False, True]),
        "bytes": np.array([0, 255], dtype=np.uint8),
        "i32": np.array([-(2**31), 7], dtype=np.int32),
        "labels": np.array([[-1.5, 0.0], [2.25, 3.0]], dtype=np.float64),
        "raw_text": np.array(["good film", "bad \u00e9"], dtype=object),
        "lengths": [3, 1],
        "empty": np.zeros((0, 4), dtype=np.float32),
        "scalar": np.array(2.5, dtype=np.float64),
    }
    ints = [0, -1, 255, 256, 65535, 65536, -(2**31), 2**31, -(2**63), 2**63 - 1]
    misc = (None, True, False, "\u00fcn\u00ef\n", b"\x00\xff", (), (1,), {})
    return {"train": train, "ints": ints, "floats": [1.5, -0.0, math.inf], "misc": misc}


def same(a, b, at):
    if isinstance(b, np.ndarray):
        assert type(a) is np.ndarray, f"{at}: {type(a)}"
        assert a.dtype == b.dtype and a.shape == b.shape, f"{at}: {a.dtype}{a.shape} vs {b.dtype}{b.shape}"
        assert a.flags.c_contiguous and a.flags.writeable, at
        assert (a == b).all(), f"{at}: {a} vs {b}"
    elif isinstance(b, dict):
        assert type(a) is dict and list(a) == list(b), f"{at}: {a!r}"
        for k in b:
            same(a[k], b[k], f"{at}[{k!r}]")
    elif isinstance(b, (list, tuple)):
        assert type(a) is type(b) and len(a) == len(b), f"{at}: {a!r}"
        for i, (x, y) in enumerate(zip(a, b)):
            same(x, y, f"{at}[{i}]")
    else:
        assert type(a) is type(b) and a == b, f"{at}: {a!r} vs {b!r}"
        if isinstance(b, float):
            assert math.copysign(1.0, a) == math.copysign(1.0, b), f"{at}: sign"


def main():
    with open(os.path.join(HERE, "rust_written.pkl"), "rb") as f:
        value = pickle.load(f)
    want = expected()
    same(value, want, "pkl")
    same(np.load(os.path.join(HERE, "rust_written_audio.npy")), want["train"]["audio"], "npy")
    objects = np.load(os.path.join(HERE, "rust_written_raw_text.npy"), allow_pickle=True)
    same(objects, want["train"]["raw_text"], "npy object")
    print(f"OK: numpy {np.__version__} loads rust_written.pkl and the .npy files")


if __name__ == "__main__":
    sys.exit(main())
