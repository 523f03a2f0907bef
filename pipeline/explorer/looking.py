"""What a network does with one input, layer by layer, computed by the core's own passes:
the forward pass gives every hidden layer's activations Aˡ and the 10 probabilities, and the
backward pass, started from the predicted digit's score alone, gives how much each first-layer
unit drives it: its activation times the gradient of that score through it (for ReLU units,
exactly the score it adds; the units that most drive the prediction come first).
"""

from __future__ import annotations

import numpy as np

from pipeline.nn import MLP
from pipeline.nn.loss import softmax_rows

TOP_UNITS = 8  # first-layer units picked out on the page


def look_inside(network: MLP, image: np.ndarray) -> dict:
    """Probabilities, prediction, hidden activations and the top first-layer units for one
    784-pixel input in [0, 1]."""
    column = np.asarray(image, dtype=network.dtype).reshape(-1, 1)
    passed = network.forward(column)
    probabilities = softmax_rows(passed.logits.T)[0]
    predicted = int(probabilities.argmax())
    score = np.zeros_like(passed.logits)
    score[predicted] = 1.0  # d(score of the predicted digit) / d(logits)
    first_layer_bias_gradient = network.backward(passed, score)[1][:, 0]
    drive = passed.activations[0][:, 0] * first_layer_bias_gradient
    top = np.argsort(-drive, kind="stable")[:TOP_UNITS]
    return {
        "probabilities": [float(p) for p in probabilities],
        "predicted": predicted,
        "layers": [[round(float(a), 4) for a in layer[:, 0]] for layer in passed.activations],
        "top_units": [int(unit) for unit in top if drive[unit] > 0],
    }
