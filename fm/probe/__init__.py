"""Frozen-encoder embeddings (resumable, sharded under torchrun), the feature sources a probe compares,
linear probes with bootstrap intervals, and a probe run's outputs."""

from fm._moved import forward_old_names

__getattr__ = forward_old_names(__name__)  # fm.probe was a module before the subpackages
