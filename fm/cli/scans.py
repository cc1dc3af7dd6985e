"""`fm info` and `fm convert`: a scan's geometry and intensities, and the scan in another format."""

from __future__ import annotations

import json
from pathlib import Path

import click
import numpy as np

from fm.cli.errors import reports_input_errors
from fm.cli.options import input_options, load_scan, scan_path
from fm.core.examples import DEFAULT_EXAMPLE, EXAMPLES
from fm.core.io import GRIDS, save_volume
from fm.pipeline.gate import check_scan


@click.command()
@click.argument("path", required=False, type=click.Path(path_type=str))
@click.option(
    "--example",
    is_flag=False,
    flag_value=DEFAULT_EXAMPLE,
    type=click.Choice(sorted(EXAMPLES)),
    help=f"Use a bundled example scan instead of PATH (default: {DEFAULT_EXAMPLE}).",
)
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
@input_options
@reports_input_errors
def info(path, example, as_json, frame, series, modality, max_voxels):
    """Print a scan's geometry and intensities.

    Shows shape, voxel spacing, the file's orientation code, the RAS bounding box in mm, the
    modality, the intensity range, for DICOM which series was read, and the input gate's verdict
    from the file alone (CT, 2D and non-head scans are refused by fm report).

    \b
    Examples:
      fm info scan.nii.gz
      fm info dicom_folder/ --series 2
      fm info --example
    """
    path, modality = scan_path(path, example, modality)
    volume = load_scan(path, frame, series, modality, max_voxels)
    summary = volume.summary()
    reasons = check_scan(volume)
    summary["gate"] = {"brain_mri": not reasons, "reasons": reasons}
    if as_json:
        click.echo(json.dumps(summary, indent=2))
    else:
        click.echo(_format_summary(summary))


def _format_summary(s: dict) -> str:
    lo, hi = np.array(s["ras_bounds_mm"]["min"]), np.array(s["ras_bounds_mm"]["max"])
    intensity = s["intensity"]
    rows = [
        ("file", s["file"]),
        ("format", s["format"]),
        (
            "shape",
            " x ".join(map(str, s["shape"]))
            + " voxels"
            + (f" (in the file: {' x '.join(map(str, s['source_shape']))})" if s["source_shape"] != s["shape"] else ""),
        ),
        ("spacing", " x ".join(f"{v:.4g}" for v in s["spacing_mm"]) + " mm"),
        ("orientation", f"{s['source_orientation']} in the file; held as {s['orientation']}"),
        ("RAS extent", "  ".join(f"{axis} {low:.1f} .. {high:.1f}" for axis, low, high in zip("xyz", lo, hi)) + " mm"),
        ("modality", s["modality"] or "unknown"),
        ("intensity", f"{intensity['min']:.6g} .. {intensity['max']:.6g} (mean {intensity['mean']:.6g})"),
    ]
    series = s["meta"].get("dicom_series")
    if series:
        rows.append(
            (
                "DICOM series",
                f"{series['index']} of {series['of']}: number {series['number']} "
                f"{series['description']!r}, {series['slices']} slices",
            )
        )
    gate = s["gate"]
    rows.append(
        (
            "input gate",
            "brain MRI as far as the file shows (brain extraction checks more in fm report)"
            if gate["brain_mri"]
            else "refused: " + "; ".join(gate["reasons"]),
        )
    )
    return "\n".join(f"{key:<13}{value}" for key, value in rows)


@click.command()
@click.argument("source", type=click.Path(path_type=str))
@click.argument("output", type=click.Path(path_type=Path))
@click.option(
    "--grid",
    type=click.Choice(GRIDS),
    default="source",
    show_default=True,
    help="Write on the input's own voxel grid, or in the RAS-closest layout.",
)
@click.option("--overwrite", is_flag=True, help="Replace OUTPUT if it exists.")
@input_options
@reports_input_errors
def convert(source, output, grid, overwrite, frame, series, modality, max_voxels):
    """Convert a scan to NIfTI, MGZ, NRRD or MHA (by OUTPUT's extension).

    A DICOM series becomes one 3D file with its geometry intact; an existing OUTPUT is kept
    unless --overwrite is given.

    \b
    Examples:
      fm convert dicom_folder/ scan.nii.gz
      fm convert scan.mha scan_ras.nii.gz --grid ras
    """
    volume = load_scan(source, frame, series, modality, max_voxels)
    written = save_volume(volume, output, grid=grid, overwrite=overwrite)
    click.echo(f"wrote {written}")
