"""Softmax cross-entropy, fused: the loss of the 10 outputs and its gradient dZ = A - Y.

`logits` are (classes × m), one column per example. Subtracting each column's maximum before
exponentiating (log-sum-exp) keeps exp() ≤ 1, so no logit is too large for the float type.
"""

from __future__ import annotations

import numpy as np


def softmax_cross_entropy(logits: np.ndarray, labels: np.ndarray) -> tuple[float, np.ndarray]:
    """Mean cross-entropy of softmax(logits) against integer labels, and dZ = A - Y.

    `logits` is overwritten: it becomes dZ, the returned gradient (not yet divided by m).
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


def softmax_rows(logits: np.ndarray) -> np.ndarray:
    """softmax over each row of (N × classes) logits, in place, the row maximum subtracted."""
    logits -= logits.max(axis=1, keepdims=True)
    np.exp(logits, out=logits)
    logits /= logits.sum(axis=1, keepdims=True)
    return logits
