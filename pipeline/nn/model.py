"""The multilayer perceptron, written as in the notes "Building a neural network from scratch".

Examples are columns, as in the notes: a batch X of m images is a 784×m matrix A⁰. Each dense
layer l computes

    Zˡ = Wˡ·Aˡ⁻¹ + bˡ          Wˡ is (units out × units in), bˡ is (units out × 1)
    Aˡ = g(Zˡ)                 g = ReLU (or leaky ReLU, tanh, sigmoid) on hidden layers

and the last layer's Z holds 10 logits per example, turned into probabilities by softmax. The
loss is the mean cross-entropy (loss.py). Backpropagation, with Y the one-hot labels:

    dZᴸ = Aᴸ - Y               (softmax fused with cross-entropy)
    dWˡ = (1/m)·dZˡ·Aˡ⁻¹ᵀ
    dbˡ = (1/m)·Σ dZˡ          (summed over the m examples)
    dZˡ⁻¹ = Wˡᵀ·dZˡ ⊙ g'(Zˡ⁻¹)

`forward` is the one forward pass: training (`loss_and_grads`) and inference (`logits`,
`predict`, `probabilities`) both call it. The data arrive as rows (N×784, as stored); `X.T` is
a free view, so no copy is made. The factor 1/m is applied once to the small dZᴸ (10×m) rather
than to every dW: all later gradients inherit it. db = (1/m)·Σ dZ is computed as dZ·1, a
matmul with a column of ones, four times faster than dZ.sum(axis=1) at the default size
(benchmarks/speed_tricks.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import pairwise

import numpy as np

from pipeline.nn.activations import ACTIVATIONS
from pipeline.nn.initialisation import init_layer
from pipeline.nn.lanes import matmul
from pipeline.nn.loss import softmax_cross_entropy, softmax_rows


@dataclass
class ForwardPass:
    """What the forward pass computed, kept for the backward pass."""

    logits: np.ndarray  # Zᴸ, classes × m
    inputs: list[np.ndarray]  # A⁰ … Aᴸ⁻¹ as each layer saw them (after dropout)
    activations: list[np.ndarray]  # g(Zˡ) of each hidden layer, before dropout
    masks: list[np.ndarray]  # the scaled dropout mask of each hidden layer; empty without


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

    def forward(
        self,
        a: np.ndarray,
        dropout: float = 0.0,
        rng: np.random.Generator | None = None,
        input_dropout: float = 0.0,
    ) -> ForwardPass:
        """Zˡ = Wˡ·Aˡ⁻¹ + bˡ and Aˡ = g(Zˡ), layer by layer, for the columns of `a` (784 × m).

        With `dropout` > 0 (training), each hidden unit's output is zeroed with that
        probability and the kept ones scaled by 1/(1 - dropout) (inverted dropout), so
        inference needs no rescaling; `input_dropout` does the same to the input pixels
        (Srivastava et al. 2014 drop 20% of them, 50% of hidden units). The masks are drawn
        from `rng`, the input's first; a rate of 0 draws nothing.
        """
        g = ACTIVATIONS[self.activation][0]
        if input_dropout:
            keep = self.dtype.type(1.0 / (1.0 - input_dropout))
            a = a * ((rng.random(a.shape, dtype=self.dtype) >= input_dropout) * keep)
        keep_scale = self.dtype.type(1.0 / (1.0 - dropout)) if dropout else None
        inputs, activations, masks = [], [], []
        last = len(self.weights) - 1
        for layer, (w, b) in enumerate(zip(self.weights, self.biases, strict=True)):
            inputs.append(a)
            z = matmul(w, a)
            z += b
            if layer == last:
                break
            a = g(z)  # in place: every g' can be read from A alone
            activations.append(a)
            if dropout:
                mask = (rng.random(a.shape, dtype=self.dtype) >= dropout) * keep_scale
                a = a * mask
                masks.append(mask)
        return ForwardPass(z, inputs, activations, masks)

    def backward(self, passed: ForwardPass, dz: np.ndarray) -> list[np.ndarray]:
        """The gradients [dW¹, db¹, …] (in the order of `params()`) from dZᴸ, which must
        already carry the 1/m."""
        g_backward = ACTIVATIONS[self.activation][1]
        ones = np.ones((dz.shape[1], 1), dtype=self.dtype)
        grads = []
        for layer in range(len(self.weights) - 1, -1, -1):
            grads[:0] = [
                matmul(dz, passed.inputs[layer].T),
                dz @ ones,
            ]  # dW = (1/m)·dZ·Aᵀ, db = (1/m)·Σ dZ
            if layer:
                da = matmul(self.weights[layer].T, dz)
                if passed.masks:
                    da *= passed.masks[layer - 1]
                dz = g_backward(passed.activations[layer - 1], da)  # dZ = Wᵀ·dZ ⊙ g'(Z)
        return grads

    def loss_and_grads(
        self,
        x: np.ndarray,
        labels: np.ndarray,
        dropout: float = 0.0,
        rng: np.random.Generator | None = None,
        input_dropout: float = 0.0,
    ) -> tuple[float, int, list[np.ndarray]]:
        """One training step's forward and backward pass over the rows of `x`: the mean loss,
        the number of correct predictions, and the gradients in the order of `params()`."""
        passed = self.forward(x.T, dropout, rng, input_dropout)
        correct = int(np.count_nonzero(passed.logits.argmax(axis=0) == labels))
        loss, dz = softmax_cross_entropy(passed.logits, labels)
        dz *= self.dtype.type(1.0 / len(x))  # the 1/m of every gradient below
        return loss, correct, self.backward(passed, dz)

    def cap_unit_norms(self, max_norm: float) -> None:
        """Max-norm (Srivastava et al. 2014, section 5.1): scale down, in place, every hidden
        unit's incoming weights (a row of Wˡ, l < L) whose L2 norm exceeds `max_norm` onto that
        sphere. The paper caps hidden units only; a capped output layer would also bound the
        logits, and so how confident, and how low in loss, the network can be. The other rows,
        the output layer and the biases stay as they are."""
        for w in self.weights[:-1]:
            norms = np.sqrt(np.einsum("ij,ij->i", w, w))
            over = norms > max_norm
            if over.any():
                w[over] *= (max_norm / norms[over])[:, None].astype(w.dtype)

    def logits(self, x: np.ndarray, chunk: int = 8192) -> np.ndarray:
        """Class scores (N × classes) for rows of `x`, no dropout, in chunks to bound memory."""
        out = np.empty((len(x), self.sizes[-1]), dtype=self.dtype)
        for start in range(0, len(x), chunk):
            out[start : start + chunk] = self.forward(x[start : start + chunk].T).logits.T
        return out

    def probabilities(self, x: np.ndarray) -> np.ndarray:
        """softmax(logits) for rows of `x` (N × classes)."""
        return softmax_rows(self.logits(x))

    def predict(self, x: np.ndarray) -> np.ndarray:
        """The most probable digit for each row of `x`."""
        return self.logits(x).argmax(axis=1)
