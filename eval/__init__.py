"""Evaluation: linear probes, segmentation, reports, VQA and benchmarks."""
