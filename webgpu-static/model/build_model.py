"""Train the WebGPU demo's digit classifier and export it to ONNX.

Data: scikit-learn's bundled `digits` set (1,797 8x8 images, shipped inside the wheel: nothing is downloaded).
Model: a multi-layer perceptron (64 -> 64 -> 10) trained by scikit-learn, written as a plain ONNX graph with
`onnx.helper` from the trained weights: MatMul, Add, Relu and Softmax only, so that every node runs on ONNX
Runtime Web's WebGPU execution provider (skl2onnx would emit ai.onnx.ml operators that the WebGPU EP lacks).

Input  `pixels`        float32 [batch, 64]: row-major 8x8 image, ink intensity in [0, 1] (the data set's 0..16 / 16)
Output `probabilities` float32 [batch, 10]: softmax over the digits 0-9

Writes into OUT_DIR:
  digits.onnx    the model
  samples.json   one held-out test image per digit (the page's sample buttons, the tests' inputs)
  model.json     metadata: accuracy on the held-out split, shapes, opset, training parameters

Deterministic: fixed seeds and split, single-threaded BLAS, no timestamps in the files; the same inputs give
byte-identical files. Fails (exit 1) when test accuracy is below 95 %.

Usage: python build_model.py OUT_DIR
"""

from __future__ import annotations

import os

# One BLAS thread: results must not depend on how many cores happen to be free.
for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_var] = "1"

import json  # noqa: E402
import sys  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import onnx  # noqa: E402
from onnx import TensorProto, helper, numpy_helper  # noqa: E402
from sklearn.datasets import load_digits  # noqa: E402
from sklearn.model_selection import train_test_split  # noqa: E402
from sklearn.neural_network import MLPClassifier  # noqa: E402

MIN_ACCURACY = 0.95
SEED = 0
HIDDEN = 64
OPSET = 17  # Softmax over the last axis; well inside what ONNX Runtime Web 1.30 supports
INPUT, OUTPUT = "pixels", "probabilities"


def train() -> tuple[MLPClassifier, np.ndarray, np.ndarray]:
    digits = load_digits()
    x = (digits.data / 16.0).astype(np.float32)  # k/16 is exact in float32
    y = digits.target.astype(np.int64)
    x_train, x_test, y_train, y_test = train_test_split(x, y, test_size=0.25, random_state=SEED, stratify=y)
    mlp = MLPClassifier(
        hidden_layer_sizes=(HIDDEN,), activation="relu", alpha=1e-3, max_iter=1000, random_state=SEED, tol=1e-5
    )
    mlp.fit(x_train, y_train)
    return mlp, x_test, y_test


def to_onnx(mlp: MLPClassifier) -> onnx.ModelProto:
    if list(mlp.classes_) != list(range(10)):
        raise ValueError(f"unexpected classes {mlp.classes_}")
    weights = [w.astype(np.float32) for w in mlp.coefs_]
    biases = [b.astype(np.float32) for b in mlp.intercepts_]
    initializers, nodes = [], []
    current = INPUT
    for i, (w, b) in enumerate(zip(weights, biases, strict=True)):
        initializers += [numpy_helper.from_array(w, f"W{i}"), numpy_helper.from_array(b, f"B{i}")]
        nodes += [
            helper.make_node("MatMul", [current, f"W{i}"], [f"matmul{i}"], name=f"MatMul{i}"),
            helper.make_node("Add", [f"matmul{i}", f"B{i}"], [f"dense{i}"], name=f"Add{i}"),
        ]
        current = f"dense{i}"
        if i < len(weights) - 1:
            nodes.append(helper.make_node("Relu", [current], [f"relu{i}"], name=f"Relu{i}"))
            current = f"relu{i}"
    nodes.append(helper.make_node("Softmax", [current], [OUTPUT], name="Softmax", axis=-1))
    graph = helper.make_graph(
        nodes,
        "digits_mlp",
        [helper.make_tensor_value_info(INPUT, TensorProto.FLOAT, ["batch", 64])],
        [helper.make_tensor_value_info(OUTPUT, TensorProto.FLOAT, ["batch", 10])],
        initializers,
    )
    model = helper.make_model(
        graph,
        opset_imports=[helper.make_opsetid("", OPSET)],
        producer_name="foundry-stack webgpu-static",
        producer_version="1",
        doc_string="Digit classifier (8x8, scikit-learn digits) for the WebGPU demo.",
    )
    model.ir_version = 8  # readable by every ONNX Runtime since 1.10
    onnx.checker.check_model(model, full_check=True)
    return model


def reference_forward(mlp: MLPClassifier, x: np.ndarray) -> np.ndarray:
    """The exported graph's arithmetic in float32 numpy, to check the export independently of any runtime."""
    h = x
    for i, (w, b) in enumerate(zip(mlp.coefs_, mlp.intercepts_, strict=True)):
        h = h @ w.astype(np.float32) + b.astype(np.float32)
        if i < len(mlp.coefs_) - 1:
            h = np.maximum(h, 0)
    e = np.exp(h - h.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def samples(x_test: np.ndarray, y_test: np.ndarray) -> list[dict]:
    out = []
    for digit in range(10):
        index = int(np.flatnonzero(y_test == digit)[0])
        out.append({"label": digit, "pixels": [round(float(v) * 16) / 16 for v in x_test[index]]})
    return out


def build(out_dir: Path) -> dict:
    mlp, x_test, y_test = train()
    model = to_onnx(mlp)
    probs = reference_forward(mlp, x_test)
    accuracy = float((probs.argmax(axis=1) == y_test).mean())
    agree = float((probs.argmax(axis=1) == mlp.predict(x_test)).mean())
    try:  # Cross-check with ONNX Runtime when it is installed (the tests' venv and the Docker build have it).
        import onnxruntime as ort

        session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
        ort_probs = session.run([OUTPUT], {INPUT: x_test})[0]
        max_diff = float(np.abs(ort_probs - probs).max())
        accuracy = float((ort_probs.argmax(axis=1) == y_test).mean())
        checked_with = f"onnxruntime {ort.__version__} (max |diff| vs numpy {max_diff:.2e})"
    except ImportError:
        checked_with = "numpy float32 reference"
    print(f"digits MLP: test accuracy {accuracy:.4f} on {len(y_test)} held-out images, checked with {checked_with}")
    if agree < 0.999:
        raise SystemExit(f"exported graph disagrees with scikit-learn on {1 - agree:.2%} of the test set")
    if accuracy < MIN_ACCURACY:
        raise SystemExit(f"test accuracy {accuracy:.4f} is below {MIN_ACCURACY}")

    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "digits.onnx").write_bytes(model.SerializeToString())
    (out_dir / "samples.json").write_text(json.dumps({"samples": samples(x_test, y_test)}) + "\n")
    meta = {
        "name": "digits-mlp",
        "dataset": "scikit-learn digits (8x8, 1797 images), 25 % held out, stratified, seed 0",
        "architecture": f"64 -> {HIDDEN} (ReLU) -> 10 (softmax)",
        "operators": sorted({n.op_type for n in model.graph.node}),
        "opset": OPSET,
        "input": {"name": INPUT, "shape": ["batch", 64], "range": [0, 1]},
        "output": {"name": OUTPUT, "shape": ["batch", 10]},
        "test_accuracy": round(accuracy, 4),
        "test_images": len(y_test),
        "training_iterations": int(mlp.n_iter_),
    }
    (out_dir / "model.json").write_text(json.dumps(meta, indent=2) + "\n")
    return meta


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print(__doc__.strip().splitlines()[-1], file=sys.stderr)
        return 2
    build(Path(argv[1]))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
