"""The `fm` command: the group every subcommand joins. Each subcommand lives in the module of its
group (fm.cli.report, fm.cli.scans, ...) and is a thin shell over a library call; a problem with a
user's input (fm.core.errors.InputError) becomes a one-line message on stderr and exit status 1,
never a traceback. Any other exception is a bug in this package and shows its traceback."""

from __future__ import annotations

import click

from fm.cli.app import app_command
from fm.cli.ask import chat, vqa
from fm.cli.embeddings import embed, encoders
from fm.cli.evaluate import evaluate
from fm.cli.lm import lm
from fm.cli.probe import probe
from fm.cli.report import report, segment
from fm.cli.scans import convert, info
from fm.cli.serve import export, serve
from fm.cli.synth import synth
from fm.cli.train import train
from fm.cli.weights import weights
from fm.core.version import __version__


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="fm")
def main():
    """3D medical image foundation models: load scans, encoders, reports.

    Scans can be NIfTI (.nii, .nii.gz), MGH/MGZ, NRRD, MHA/MHD, a DICOM file, a folder of DICOM
    files or a .zip of one. Coordinates are RAS millimetres; left and right come from the
    scan's affine.
    """


for command in (
    info,
    convert,
    synth,
    embed,
    encoders,
    segment,
    report,
    vqa,
    chat,
    probe,
    export,
    serve,
    train,
    lm,
    app_command,
    evaluate,
    weights,
):
    main.add_command(command)
