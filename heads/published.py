"""Where each registered segmenter's weights come from: the segmenters' half of encoders.published.

A published-checkpoint segmenter (`swin_bob`, `swin_bob_btcv`) builds the encoder of the same name,
so its rows are that encoder's, less the backbone-only files that carry no decoder. The two
segmenters that need no download get a row of their own here; the bundled network's SHA-256 is
read from the installed file rather than written down, so it cannot go stale.
"""

from __future__ import annotations

from encoders.published import PublishedWeights, published_weights
from fm.core.checksums import content_hash
from heads.segmenters import ADAPTIVE_MODEL_ID, BUNDLED_NETWORK, bundled_network_folder, list_segmenters


def _atlas_row() -> PublishedWeights:
    return PublishedWeights(
        name=ADAPTIVE_MODEL_ID,
        title="atlas priors and a Gaussian mixture fitted to each scan (no trained weights)",
        source="bundled: nilearn's MNI ICBM152 templates (nilearn/datasets/data/mni_icbm152_*_tal_nlin_sym_09a_*)",
        licence=(
            "nilearn BSD-3-Clause; the MNI ICBM152 templates carry the McConnell Brain Imaging Centre's own "
            "notice (not checked here)"
        ),
        format="no weights file: T1, grey- and white-matter NIfTI templates read at run time",
        notes="The template files are the symmetric ICBM152 2009 set nilearn ships.",
        bundled=True,
    )


def _bundled_row() -> PublishedWeights:
    weights = bundled_network_folder() / "model.safetensors"
    return PublishedWeights(
        name=BUNDLED_NETWORK,
        title="U-Net trained on synthetic scans, bundled with fm3d",
        source="bundled: fm/data/default_segmenter in the fm3d package",
        licence="Apache-2.0 (fm3d)",
        format="this project's model folder: config.json + model.safetensors (+ evaluation.json)",
        sha256=content_hash(weights) if weights.is_file() else "unknown",
        notes="SHA-256 of the installed model.safetensors.",
        bundled=True,
    )


def segmenter_weights() -> dict[str, list[PublishedWeights]]:
    """Registered segmenter name -> its published weights (an empty list: none recorded)."""
    rows: dict[str, list[PublishedWeights]] = {}
    for name in list_segmenters():
        if name == ADAPTIVE_MODEL_ID:
            rows[name] = [_atlas_row()]
        elif name == BUNDLED_NETWORK:
            rows[name] = [_bundled_row()]
        else:
            rows[name] = [row for row in published_weights(name) if not row.backbone_only]
    return rows
