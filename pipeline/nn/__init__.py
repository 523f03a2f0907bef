"""The from-scratch network: pure numpy, no I/O, no Hydra, no MLflow.

activations.py  ReLU, leaky ReLU, tanh, sigmoid and their derivatives
model.py        the multilayer perceptron: init, forward, softmax cross-entropy, backprop
optim.py        gradient descent, SGD with momentum/Nesterov, Adam/AdamW; LR schedules
train.py        the training loop: mini-batches, dropout, early stopping, divergence check
"""

from pipeline.nn.model import MLP, ModelFormatError
from pipeline.nn.optim import make_optimizer, make_schedule
from pipeline.nn.train import TrainingDiverged, fit

__all__ = ["MLP", "ModelFormatError", "TrainingDiverged", "fit", "make_optimizer", "make_schedule"]
