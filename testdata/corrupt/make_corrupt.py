"""Writes the corpus of bad files that cider-data's readers must refuse with typed errors.

    python3 make_corrupt.py        (plain Python 3, no NumPy; run from any directory)

Every malicious pickle here is assembled byte by byte; none is ever unpickled by Python.
`expected.json` maps each file to the reader that opens it and the `DataError` variant it must
give. Some files are cut from the valid fixtures in ../pickles.
"""

import json
import os
import struct

HERE = os.path.dirname(os.path.abspath(__file__))
PICKLES = os.path.join(HERE, "..", "pickles")


def fixture(name):
    with open(os.path.join(PICKLES, name), "rb") as f:
        return f.read()


def short_str(text):
    data = text.encode()
    return b"\x8c" + bytes([len(data)]) + data


def array_pickle(shape, data, code="f4"):
    """A protocol 3 pickle of an ndarray as NumPy 1.x writes it, with `data` as the raw bytes."""
    dims = b"".join(b"K" + bytes([d]) for d in shape)
    return (
        b"\x80\x03cnumpy.core.multiarray\n_reconstruct\ncnumpy\nndarray\n"
        b"K\x00\x85C\x01b\x87R"
        b"(K\x01(" + dims + b"t"
        b"cnumpy\ndtype\nX\x02\x00\x00\x00" + code.encode() + b"\x89\x88\x87R"
        b"(K\x03X\x01\x00\x00\x00<NNNJ\xff\xff\xff\xffJ\xff\xff\xff\xffK\x00tb"
        b"\x89C" + bytes([len(data)]) + data + b"tb."
    )


def main():
    files = {}

    def add(name, data, reader, error, note):
        with open(os.path.join(HERE, name), "wb") as f:
            f.write(data)
        files[name] = {"reader": reader, "error": error, "note": note}

    # Forbidden globals: each would run code if unpickled by Python.
    add("os_system.pkl", b"cos\nsystem\n(S'echo pwned'\ntR.", "pickle", "ForbiddenGlobal",
        "protocol 0 REDUCE of os.system")
    add("builtins_eval.pkl",
        b"\x80\x04" + short_str("builtins") + short_str("eval") + b"\x93" + short_str("1+1")
        + b"\x85R.", "pickle", "ForbiddenGlobal", "protocol 4 STACK_GLOBAL builtins.eval")
    add("posix_system.pkl", b"\x80\x02cposix\nsystem\nX\x02\x00\x00\x00id\x85R.", "pickle",
        "ForbiddenGlobal", "protocol 2 posix.system")
    add("unknown_class.pkl",
        b"\x80\x02csklearn.linear_model\nLogisticRegression\n)\x81}b.", "pickle",
        "ForbiddenGlobal", "an arbitrary class instantiated with NEWOBJ")
    add("popen_as_array_subtype.pkl",
        b"\x80\x02cnumpy.core.multiarray\n_reconstruct\ncsubprocess\nPopen\nK\x00\x85C\x01b\x87R.",
        "pickle", "ForbiddenGlobal", "_reconstruct asked to build a subprocess.Popen")
    # Malformed streams.
    f4 = struct.pack("<6f", *[i * 0.5 - 1.0 for i in range(6)])
    p3 = fixture("np2_p3.pkl")
    add("truncated_array.pkl", p3[: p3.index(f4) + 10], "pickle", "Pickle",
        "np2_p3.pkl (no frames) cut 10 bytes into the first array's data")
    p4 = fixture("np2_p4.pkl")
    add("truncated_frame.pkl", p4[: p4.index(f4) + 10], "pickle", "Pickle",
        "np2_p4.pkl cut 10 bytes into the first array's data, inside its first frame")
    add("shape_mismatch.pkl", array_pickle((2, 3), b"\x00" * 20), "pickle", "Pickle",
        "a (2, 3) float32 array with 20 data bytes instead of 24")
    add("unsupported_dtype.pkl", array_pickle((2,), b"\x00" * 4, code="f2"), "pickle", "Pickle",
        "a float16 array")
    add("huge_binbytes8.pkl", b"\x80\x04\x8e" + struct.pack("<Q", 2**60) + b"abc.", "pickle",
        "Pickle", "BINBYTES8 declaring 2^60 bytes")
    add("huge_frame.pkl", b"\x80\x04\x95" + struct.pack("<Q", 2**63) + b"N.", "pickle", "Pickle",
        "FRAME declaring 2^63 bytes")
    add("stack_underflow.pkl", b"\x80\x04a.", "pickle", "Pickle", "APPEND on an empty stack")
    add("bad_opcode.pkl", b"\x80\x04N\xfe.", "pickle", "Pickle", "opcode 0xfe does not exist")
    add("deep_nesting.pkl", b"\x80\x04" + b"]" * 1000 + b"a" * 999 + b".", "pickle", "Pickle",
        "1000 nested lists")
    add("cycle.pkl", b"\x80\x04]\x94h\x00a.", "pickle", "Pickle", "a list that contains itself")
    laughs = b"\x80\x04]\x94" + short_str("x" * 200) + b"a"
    for k in range(64):
        laughs += b"]\x94(h" + bytes([k]) + b"h" + bytes([k]) + b"e"
    add("billion_laughs.pkl", laughs + b".", "pickle", "Pickle",
        "64 levels of lists holding the previous level twice (2^64 strings once expanded)")
    add("out_of_band_buffer.pkl", b"\x80\x05\x97\x98.", "pickle", "Pickle",
        "protocol 5 NEXT_BUFFER: data kept outside the file")
    add("empty.pkl", b"", "pickle", "Pickle", "an empty file")
    # joblib containers.
    add("wrong_header.joblib", b"PK\x03\x04\x14\x00\x00\x00", "joblib", "Joblib",
        "a zip file named .joblib")
    add("bz2.joblib", b"BZh91AY&SY\x00\x00", "joblib", "Joblib", "bz2 compression (unsupported)")
    add("bad_zlib.joblib", b"\x78\x9c\x00\x01garbage", "joblib", "Joblib", "a corrupt zlib stream")
    add("bad_zf_length.joblib", b"ZF0xZZ               \x78\x9c", "joblib", "Joblib",
        "an old ZF container whose length is not hex")
    add("empty.joblib", b"", "joblib", "Joblib", "an empty file")
    raw = fixture("np2_joblib_raw.joblib")
    audio = raw.index(b"K\x10ub", raw.index(b"\x8c\x05audio")) + 4
    add("truncated_array.joblib", raw[: audio + 1 + raw[audio] + 10], "joblib", "Joblib",
        "a raw dump cut 10 bytes into the `audio` array data")
    add("os_system.joblib", b"\x80\x04" + short_str("os") + short_str("system") + b"\x93"
        + short_str("id") + b"\x85R.", "joblib", "ForbiddenGlobal", "os.system in a joblib dump")
    # .npy / .npz files.
    add("bad_magic.npy", b"\x93NUMPZ\x01\x00\x00\x00", "npy", "Npy", "magic string misspelt")
    add("empty.npy", b"", "npy", "Npy", "an empty file")
    add("truncated.npy", fixture("np2_be_f8.npy")[:-5], "npy", "Npy", "data 5 bytes short")
    header = b"{'descr': '|O', 'fortran_order': False, 'shape': (1,), }\n"
    add("os_system_object.npy",
        b"\x93NUMPY\x01\x00" + struct.pack("<H", len(header)) + header
        + b"cos\nsystem\n(S'id'\ntR.", "npy", "ForbiddenGlobal",
        "an object .npy whose pickled payload calls os.system")
    add("not_a_zip.npz", b"PK\x05\x06 broken", "npz", "Npy", "a broken zip archive")

    with open(os.path.join(HERE, "expected.json"), "w") as f:
        json.dump(files, f, indent=1, sort_keys=True)
        f.write("\n")


if __name__ == "__main__":
    main()
