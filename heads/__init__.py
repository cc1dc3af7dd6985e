"""Segmenters: the registry (segmenters), the contrast-adaptive default (brain), network heads on
encoder features (network_segmenter), self-describing model folders, test-time adaptation."""

import fm  # noqa: F401  (installs fm._moved: heads.atlas and heads.segmentation keep working until 0.2)
