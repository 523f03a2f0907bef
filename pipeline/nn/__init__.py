"""The from-scratch network: pure numpy, no I/O, no config, no tracking; imports nothing else
of the project, so it can be read, tested and shipped (with the served model) on its own.

activations.py     ReLU, leaky ReLU, tanh, sigmoid and their derivatives
initialisation.py  He, Xavier and the notes' U(-0.5, 0.5) initial weights
loss.py            softmax cross-entropy fused with its gradient dZ = A - Y
model.py           the multilayer perceptron: one forward pass, backprop, inference
lanes.py           large products and updates shared over the cores, with the same bits
serialization.py   a network as plain named arrays (saved without pickle)
optimizers.py      gradient descent, SGD with momentum/Nesterov, Adam/AdamW
schedules.py       learning rate per epoch: constant, step, cosine
augment.py         random shifts of the training images
distortions.py     affine and elastic distortions (Simard et al. 2003)
fitting.py         the training loop: mini-batches, dropout, early stopping, divergence check
"""

from pipeline.nn.activations import ACTIVATIONS
from pipeline.nn.distortions import Distortion, distort
from pipeline.nn.fitting import EpochRecord, FitResult, TrainingDiverged, fit, loss_and_accuracy
from pipeline.nn.initialisation import INITS
from pipeline.nn.lanes import set_lanes
from pipeline.nn.model import MLP
from pipeline.nn.optimizers import OPTIMIZERS, make_optimizer
from pipeline.nn.schedules import SCHEDULES, make_schedule
from pipeline.nn.serialization import ModelFormatError, model_from_arrays, model_to_arrays

__all__ = [
    "ACTIVATIONS",
    "INITS",
    "MLP",
    "OPTIMIZERS",
    "SCHEDULES",
    "Distortion",
    "EpochRecord",
    "FitResult",
    "ModelFormatError",
    "TrainingDiverged",
    "distort",
    "fit",
    "loss_and_accuracy",
    "make_optimizer",
    "make_schedule",
    "model_from_arrays",
    "model_to_arrays",
    "set_lanes",
]
