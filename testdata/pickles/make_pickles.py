"""Writes the small pickle / joblib fixtures of `cider-data` and their manifest.

Run once per NumPy major version (each run writes only its own files and merges its entries
into manifest.json; the .npy / .npz fixtures come from the NumPy 2 run):

    python3 -m venv /tmp/np1 && /tmp/np1/bin/pip install numpy==1.26.4 joblib
    python3 -m venv /tmp/np2 && /tmp/np2/bin/pip install 'numpy>=2' joblib
    /tmp/np1/bin/python make_pickles.py
    /tmp/np2/bin/python make_pickles.py

The manifest describes every value independently of the files: floats are given by their IEEE
bit patterns (`bits`, u32 for float32 array elements, u64 otherwise), arrays by dtype, shape and
C-order elements.
"""

import json
import os
import pickle
import struct
import sys

import joblib
import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
MAJOR = int(np.__version__.split(".")[0])
TAG = f"np{MAJOR}"


def pickle_object():
    """The value pickled with every protocol: all dtypes, byte orders, layouts and containers."""
    be = np.arange(4, dtype=">f8") - 1.5
    shared_list = [1, 2]
    shared_array = np.array([[1, 2], [3, 4]], dtype="<i4")
    fortran_obj = np.empty((2, 3), dtype=object, order="F")
    for i in range(2):
        for j in range(3):
            fortran_obj[i, j] = f"r{i}c{j}"
    return {
        "f4": (np.arange(6, dtype="<f4").reshape(2, 3) * 0.5 - 1.0),
        "f4_special": np.array([np.inf, -np.inf, np.nan, -0.0, 1e-40], dtype="<f4"),
        "f8_be": be,
        "f8_be_again": be * 2.0,
        "i8": np.array([[-3, 2**40], [7, -(2**62)]], dtype="<i8"),
        "i4_be": np.array([1, -2, 2**31 - 1], dtype=">i4"),
        "u1": np.array([0, 255, 7], dtype="u1"),
        "b1": np.array([[True, False, True], [False, False, True]]),
        "fortran_f4": np.asfortranarray(np.arange(24, dtype="<f4").reshape(2, 3, 4)),
        "fortran_i8_be": np.asfortranarray(np.arange(6, dtype=">i8").reshape(3, 2)),
        "strided": np.arange(12, dtype="<f8").reshape(3, 4)[:, ::2],
        "obj": np.array(["a", "h\u00e9llo \u2603", ""], dtype=object),
        "obj_fortran": fortran_obj,
        "empty": np.zeros((0, 3), dtype="<f8"),
        "zero_dim": np.array(3.5, dtype="<f8"),
        "scalar_f4": np.float32(1.5),
        "scalar_f8": np.float64(-2.25),
        "scalar_i8": np.int64(-7),
        "scalar_bool": np.bool_(True),
        "ints": [0, 1, -1, 255, 256, 65535, 65536, 2**31 - 1, 2**31, -(2**31) - 1, 2**63 - 1, -(2**63)],
        "floats": [0.0, -0.0, 3.25, 1e300, float("inf")],
        "misc": [None, True, False, "text \u00fc\n\\\r\x00", b"\x00\xff\n", b""],
        "tuple": (1, ("nested", []), {}),
        "shared_list_a": shared_list,
        "shared_list_b": shared_list,
        "shared_array": [shared_array, shared_array],
    }


def joblib_object():
    """A miniature OOD file: a dict of splits of arrays, as CIDer's joblib dumps hold."""
    return {
        "train": {
            "raw_text": np.array(["good film", "bad \u00e9"], dtype=object),
            "audio": np.arange(2 * 3 * 2, dtype="<f4").reshape(2, 3, 2) / 4.0,
            "audio_lengths": [3, 1],
            "labels": np.array([-1.5, 2.0], dtype=">f8"),
            "mask": np.array([[True, False], [False, True]]),
            "fortran": np.asfortranarray(np.arange(6, dtype="<i8").reshape(2, 3)),
            "ids": np.array([101, 0], dtype="u1"),
            "count": np.int64(2),
            "empty": np.zeros((0, 2), dtype="<f4"),
        },
        "meta": ("tiny", 1),
    }


def bits64(x):
    return struct.unpack("<Q", struct.pack("<d", float(x)))[0]


def bits32(x):
    return struct.unpack("<I", struct.pack("<f", float(x)))[0]


def describe(v):
    """JSON description of a value as the Rust reader must rebuild it."""
    if isinstance(v, np.ndarray):
        c = v.copy(order="C")
        kind = c.dtype.kind
        if kind == "O":
            data = [describe(x) for x in c.reshape(-1)]
        elif kind == "f" and c.dtype.itemsize == 4:
            data = [bits32(x) for x in c.reshape(-1)]
        elif kind == "f":
            data = [bits64(x) for x in c.reshape(-1)]
        elif kind == "b":
            data = [bool(x) for x in c.reshape(-1)]
        else:
            data = [int(x) for x in c.reshape(-1)]
        return {"t": "array", "dtype": c.dtype.name, "shape": list(c.shape), "data": data}
    if isinstance(v, (bool, np.bool_)):
        return {"t": "bool", "v": bool(v)}
    if isinstance(v, (int, np.integer)):
        return {"t": "int", "v": int(v)}
    if isinstance(v, (float, np.floating)):
        return {"t": "float", "bits": bits64(v)}
    if v is None:
        return {"t": "none"}
    if isinstance(v, str):
        return {"t": "str", "v": v}
    if isinstance(v, bytes):
        return {"t": "bytes", "hex": v.hex()}
    if isinstance(v, list):
        return {"t": "list", "items": [describe(x) for x in v]}
    if isinstance(v, tuple):
        return {"t": "tuple", "items": [describe(x) for x in v]}
    if isinstance(v, dict):
        return {"t": "dict", "items": [[describe(k), describe(x)] for k, x in v.items()]}
    raise TypeError(type(v))


def npy_arrays():
    """Arrays for the .npy / .npz readers: each dtype, byte order, layout and header version."""
    obj = np.array(["x", "y\u00e9", ""], dtype=object)
    return {
        "save_f4": (np.arange(6, dtype="<f4").reshape(2, 3) / 4.0, None),
        "be_f8": (np.array([1.5, -2.0, 1e-300], dtype=">f8"), None),
        "fortran_i4": (np.asfortranarray(np.arange(6, dtype="<i4").reshape(2, 3)), None),
        "bool": (np.array([[True, False], [False, True]]), None),
        "u1_v2": (np.array([0, 1, 255], dtype="u1"), (2, 0)),
        "i8_v3": (np.array([[-(2**40), 5]], dtype="<i8"), (3, 0)),
        "object": (obj, None),
        "zero_dim": (np.array(-0.5, dtype="<f8"), None),
    }


def write_npy(manifest):
    for label, (array, version) in npy_arrays().items():
        name = f"{TAG}_{label}.npy"
        with open(os.path.join(HERE, name), "wb") as f:
            np.lib.format.write_array(f, array, version=version, allow_pickle=True)
        manifest["files"][name] = {
            "reader": "npy", "numpy": np.__version__, "expected": describe(array),
            "format_version": list(version) if version else [1, 0],
        }
    members = {"audio": np.arange(4, dtype="<f4").reshape(2, 2), "ids": np.array([3, 1], dtype="<i8")}
    for label, save in [("stored", np.savez), ("deflated", np.savez_compressed)]:
        name = f"{TAG}_arrays_{label}.npz"
        save(os.path.join(HERE, name), **members)
        manifest["files"][name] = {
            "reader": "npz", "numpy": np.__version__,
            "expected": [[k, describe(v)] for k, v in members.items()],
        }


def main():
    manifest_path = os.path.join(HERE, "manifest.json")
    manifest = {"values": {}, "files": {}}
    if os.path.exists(manifest_path):
        with open(manifest_path) as f:
            manifest = json.load(f)
    manifest["values"]["pickle_object"] = describe(pickle_object())
    manifest["values"]["joblib_object"] = describe(joblib_object())

    for proto in range(6):
        name = f"{TAG}_p{proto}.pkl"
        with open(os.path.join(HERE, name), "wb") as f:
            pickle.dump(pickle_object(), f, protocol=proto)
        manifest["files"][name] = {
            "reader": "pickle", "value": "pickle_object", "numpy": np.__version__, "protocol": proto,
        }

    jobs = [("raw", 0, None), ("zlib3", 3, None), ("gzip3", ("gzip", 3), None), ("raw_p2", 0, 2)]
    for label, compress, proto in jobs:
        name = f"{TAG}_joblib_{label}.joblib"
        joblib.dump(joblib_object(), os.path.join(HERE, name), compress=compress, protocol=proto)
        manifest["files"][name] = {
            "reader": "joblib", "value": "joblib_object", "numpy": np.__version__,
            "joblib": joblib.__version__, "compress": str(compress), "protocol": proto or 4,
        }

    if MAJOR >= 2:
        write_npy(manifest)

    manifest["python"] = sys.version.split()[0]
    with open(manifest_path, "w") as f:
        json.dump(manifest, f, indent=1, sort_keys=True)
        f.write("\n")


if __name__ == "__main__":
    main()
