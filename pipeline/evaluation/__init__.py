"""Evaluation: scores on the test set, the confusion rows and the figures."""
