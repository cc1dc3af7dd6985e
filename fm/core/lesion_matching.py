"""Which found lesion is which true one: what a detection rate, a false-positive count and a volume
error are computed from, for the evaluation scripts and for anyone scoring this package's findings
against their own reference."""

from __future__ import annotations

import numpy as np

from fm.core.findings import Findings

MIN_MATCH_RADIUS_MM = 10.0


def match_lesions(predicted: Findings, truth: Findings) -> dict:
    """Each true lesion, in the order `truth` lists them, takes the nearest unclaimed found lesion
    whose centroid lies within its radius (half its longest diameter, 10 mm at least). Returns one row
    per true lesion (found or not, volumes, relative volume error, laterality, region and longest
    diameter on each side) and the
    number of found lesions left unmatched (false positives)."""
    unmatched = list(predicted.lesions)
    rows = []
    for lesion in truth.lesions:
        radius = max(MIN_MATCH_RADIUS_MM, lesion.longest_diameter_mm / 2)
        distances = [np.linalg.norm(np.subtract(p.centroid_ras_mm, lesion.centroid_ras_mm)) for p in unmatched]
        match = unmatched.pop(int(np.argmin(distances))) if distances and min(distances) <= radius else None
        rows.append(
            {
                "true_ml": lesion.volume_ml,
                "found": match is not None,
                "predicted_ml": match.volume_ml if match else None,
                "volume_error": abs(match.volume_ml - lesion.volume_ml) / lesion.volume_ml if match else None,
                "laterality_true": lesion.laterality.value,
                "laterality_predicted": match.laterality.value if match else None,
                "region_true": lesion.region,
                "region_predicted": match.region if match else None,
                "true_longest_mm": lesion.longest_diameter_mm,
                "predicted_longest_mm": match.longest_diameter_mm if match else None,
            }
        )
    return {"lesions": rows, "false_positives": len(unmatched)}
