"""The multilayer perceptron, written as in the notes "Building a neural network from scratch".

Examples are columns, as in the notes: a batch X of m images is a 784×m matrix A⁰. Each dense
layer l computes

    Zˡ = Wˡ·Aˡ⁻¹ + bˡ          Wˡ is (units out × units in), bˡ is (units out × 1)
    Aˡ = g(Zˡ)                 g = ReLU (or leaky ReLU, tanh, sigmoid) on hidden layers

and the last layer's Z holds 10 logits per example, turned into probabilities by softmax. The
loss is the mean cross-entropy, computed with log-sum-exp so large logits never give NaN.
Backpropagation, with Y the one-hot labels:

    dZᴸ = Aᴸ - Y               (softmax fused with cross-entropy)
    dWˡ = (1/m)·dZˡ·Aˡ⁻¹ᵀ
    dbˡ = (1/m)·Σ dZˡ          (summed over the m examples)
    dZˡ⁻¹ = Wˡᵀ·dZˡ ⊙ g'(Zˡ⁻¹)

The data arrive as rows (N×784, as stored); `X.T` is a free view, so no copy is made. The
factor 1/m is applied once to the small dZᴸ (10×m) rather than to every dW: all later
gradients inherit it, and no extra pass over the large weight gradients is needed.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from itertools import pairwise

import numpy as np

from pipeline.errors import PipelineError
from pipeline.nn.activations import ACTIVATIONS

INITS = ("he", "xavier", "uniform")


class ModelFormatError(PipelineError):
    """A saved model is not a model of this project, or disagrees with its architecture."""


def init_layer(
    fan_in: int, fan_out: int, scheme: str, rng: np.random.Generator, dtype
) -> tuple[np.ndarray, np.ndarray]:
    """Initial W (fan_out × fan_in) and b (fan_out × 1)."""
    if scheme == "he":  # He et al.: N(0, 2/fan_in), suits ReLU
        weights = rng.standard_normal((fan_out, fan_in)) * np.sqrt(2.0 / fan_in)
        biases = np.zeros((fan_out, 1))
    elif scheme == "xavier":  # Glorot uniform: U(±sqrt(6/(fan_in + fan_out)))
        limit = np.sqrt(6.0 / (fan_in + fan_out))
        weights = rng.uniform(-limit, limit, (fan_out, fan_in))
        biases = np.zeros((fan_out, 1))
    elif scheme == "uniform":  # the notes: np.random.rand(...) - 0.5, for W and b alike
        weights = rng.random((fan_out, fan_in)) - 0.5
        biases = rng.random((fan_out, 1)) - 0.5
    else:
        raise ValueError(f"unknown init {scheme!r}; choose one of {', '.join(INITS)}")
    return weights.astype(dtype), biases.astype(dtype)


def softmax_cross_entropy(logits: np.ndarray, labels: np.ndarray) -> tuple[float, np.ndarray]:
    """Mean cross-entropy of softmax(logits) against integer labels, and dZ = A - Y.

    `logits` is (classes × m). Subtracting each column's maximum before exponentiating
    (log-sum-exp) keeps exp() ≤ 1, so no logit is too large. `logits` is overwritten.
    """
    m = logits.shape[1]
    columns = np.arange(m)
    logits -= logits.max(axis=0, keepdims=True)
    true_logit = logits[labels, columns].astype(np.float64)
    probs = np.exp(logits, out=logits)
    totals = probs.sum(axis=0, keepdims=True)
    loss = float(np.mean(np.log(totals[0], dtype=np.float64) - true_logit))
    probs /= totals
    probs[labels, columns] -= 1  # A - Y
    return loss, probs


@dataclass
class MLP:
    """Dense layers `sizes[0] → sizes[1] → … → sizes[-1]` with one hidden activation."""

    sizes: tuple[int, ...]
    activation: str
    weights: list[np.ndarray]
    biases: list[np.ndarray]

    @classmethod
    def create(
        cls,
        sizes: tuple[int, ...] | list[int],
        activation: str = "relu",
        init: str = "he",
        rng: np.random.Generator | None = None,
        dtype=np.float32,
    ) -> MLP:
        if activation not in ACTIVATIONS:
            raise ValueError(
                f"unknown activation {activation!r}; choose one of {list(ACTIVATIONS)}"
            )
        if len(sizes) < 2 or min(sizes) < 1:
            raise ValueError(f"layer sizes must be ≥ 1 and at least two, got {list(sizes)}")
        rng = rng if rng is not None else np.random.default_rng(0)
        layers = [init_layer(a, b, init, rng, dtype) for a, b in pairwise(sizes)]
        return cls(tuple(sizes), activation, [w for w, _ in layers], [b for _, b in layers])

    @property
    def dtype(self) -> np.dtype:
        return self.weights[0].dtype

    def params(self) -> list[np.ndarray]:
        """[W¹, b¹, W², b², …]: the arrays the optimizer updates in place."""
        return [p for layer in zip(self.weights, self.biases, strict=True) for p in layer]

    def logits(self, x: np.ndarray, chunk: int = 8192) -> np.ndarray:
        """Class scores (N × classes) for rows of `x`, no dropout, in chunks to bound memory."""
        forward = ACTIVATIONS[self.activation][0]
        out = np.empty((len(x), self.sizes[-1]), dtype=self.dtype)
        for start in range(0, len(x), chunk):
            a = x[start : start + chunk].T
            for layer, (w, b) in enumerate(zip(self.weights, self.biases, strict=True)):
                z = w @ a
                z += b
                a = z if layer == len(self.weights) - 1 else forward(z)
            out[start : start + chunk] = a.T
        return out

    def probabilities(self, x: np.ndarray) -> np.ndarray:
        """softmax(logits) for rows of `x` (N × classes), the max subtracted so exp() ≤ 1."""
        logits = self.logits(x)
        logits -= logits.max(axis=1, keepdims=True)
        np.exp(logits, out=logits)
        logits /= logits.sum(axis=1, keepdims=True)
        return logits

    def predict(self, x: np.ndarray) -> np.ndarray:
        """The most probable digit for each row of `x`."""
        return self.logits(x).argmax(axis=1)

    def loss_and_grads(
        self,
        x: np.ndarray,
        labels: np.ndarray,
        dropout: float = 0.0,
        rng: np.random.Generator | None = None,
        scale: float = 1.0,
        scratch: dict | None = None,
    ) -> tuple[float, int, list[np.ndarray]]:
        """One forward and backward pass over the rows of `x`.

        Returns the mean loss, the number of correct predictions, and the gradients in the
        order of `params()`, multiplied by `scale` (an optimizer may ask for lr·∇). Inverted
        dropout with drop probability `dropout` is applied to every hidden layer's output. A
        `scratch` dict kept by the caller holds the gradient and activation buffers between
        steps (the returned gradients live there): fresh 400 KB arrays every step cost page
        faults, 4% of an epoch at width 800.
        """
        scratch = {} if scratch is None else scratch

        def buffer(name, layer, rows, fill=None):
            key = (name, layer, rows, m)
            if key not in scratch:
                scratch[key] = np.empty((rows, m), dtype=self.dtype)
                if fill is not None:
                    scratch[key].fill(fill)
            return scratch[key]

        forward, backward = ACTIVATIONS[self.activation]
        m = x.shape[0]
        dz_scale = self.dtype.type(scale / m)
        keep_scale = self.dtype.type(1.0 / (1.0 - dropout)) if dropout else None
        # Inverted dropout: kept units are scaled by 1/(1-p) so nothing changes at test time.
        inputs, activations, masks = [x.T], [], []
        last = len(self.weights) - 1
        for layer, (w, b) in enumerate(zip(self.weights, self.biases, strict=True)):
            z = np.matmul(w, inputs[-1], out=buffer("z", layer, len(w)))  # Z = W·A + b
            z += b
            if layer == last:
                logits = z
                break
            a = forward(z)
            activations.append(a)
            if dropout:
                mask = rng.random(dtype=self.dtype, out=buffer("mask", layer, len(a)))
                np.multiply(mask >= dropout, keep_scale, out=mask)
                a = np.multiply(a, mask, out=buffer("dropped", layer, len(a)))
                masks.append(mask)
            inputs.append(a)
        correct = int(np.count_nonzero(logits.argmax(axis=0) == labels))
        loss, dz = softmax_cross_entropy(logits, labels)
        dz *= dz_scale  # the 1/m (and `scale`) of every gradient below
        if "grads" not in scratch:
            scratch["grads"] = [np.empty_like(p) for p in self.params()]
        grads = scratch["grads"]
        ones = buffer("ones", None, 1, fill=1).T  # Σ over examples as a matmul: ~5× a sum()
        for layer in range(last, -1, -1):
            grad_w, grad_b = grads[2 * layer], grads[2 * layer + 1]
            np.matmul(dz, inputs[layer].T, out=grad_w)  # dW = (1/m)·dZ·Aᵀ
            np.matmul(dz, ones, out=grad_b)  # db = (1/m)·Σ dZ
            if layer:
                weights = self.weights[layer]
                da = np.matmul(weights.T, dz, out=buffer("da", layer, weights.shape[1]))
                if dropout:
                    da *= masks[layer - 1]
                dz = backward(activations[layer - 1], da)
        return loss, correct, grads

    def to_arrays(self) -> dict[str, np.ndarray]:
        """Weights and architecture as plain arrays (np.savez-able, no pickle)."""
        architecture = {"format": "pipeline.mlp/1", "sizes": list(self.sizes)}
        architecture["activation"] = self.activation
        arrays = {"architecture": np.array(json.dumps(architecture))}
        for layer, (w, b) in enumerate(zip(self.weights, self.biases, strict=True)):
            arrays[f"W{layer + 1}"], arrays[f"b{layer + 1}"] = w, b
        return arrays

    @classmethod
    def from_arrays(cls, arrays, source: str = "model") -> MLP:
        """Rebuild a model from `to_arrays()` output, checking every shape against the sizes."""
        try:
            architecture = json.loads(str(arrays["architecture"]))
            sizes, activation = tuple(architecture["sizes"]), architecture["activation"]
            if architecture.get("format") != "pipeline.mlp/1":
                raise ValueError("unknown format")
        except (KeyError, ValueError, TypeError):
            raise ModelFormatError(
                f"{source} is not a model saved by this project (no valid architecture record); "
                "re-run `dvc repro train`"
            ) from None
        weights, biases = [], []
        for layer, (fan_in, fan_out) in enumerate(pairwise(sizes), start=1):
            for name, shape, into in [
                (f"W{layer}", (fan_out, fan_in), weights),
                (f"b{layer}", (fan_out, 1), biases),
            ]:
                if name not in arrays:
                    raise ModelFormatError(f"{source} lacks {name} for sizes {list(sizes)}")
                array = np.asarray(arrays[name])
                if array.shape != shape:
                    raise ModelFormatError(
                        f"{source}: {name} has shape {array.shape} but sizes {list(sizes)} "
                        f"need {shape}; the file is corrupt or was edited: re-run training"
                    )
                into.append(array)
        if activation not in ACTIVATIONS:
            raise ModelFormatError(f"{source}: unknown activation {activation!r}")
        return cls(sizes, activation, weights, biases)
