"""From-scratch MNIST pipeline."""
