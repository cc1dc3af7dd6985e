"""`fm weights list`: where the published weights of every registered encoder and segmenter come
from, under which licence, in which container and with which SHA-256 (encoders.published and
heads.published hold the table; this prints it)."""

from __future__ import annotations

import json
import textwrap

import click

_FIELDS = ("source", "licence", "format", "sha256", "download", "paper", "notes")
_WIDTH = 100


def _tables() -> dict[str, dict[str, list]]:
    from encoders.published import published_weights
    from encoders.registry import list_encoders
    from heads.published import segmenter_weights

    return {
        "encoders": {name: published_weights(name) for name in list_encoders()},
        "segmenters": segmenter_weights(),
    }


def _field(kind: str, row, key: str) -> str:
    value = getattr(row, key)
    if key == "download":
        option = "--pretrained" if kind == "encoders" else f"--encoder {row.name} --model"
        if row.bundled:
            value = "none needed: installed with fm3d"
        elif not row.released:
            value = "not released yet (see notes)"
        else:
            value = f"{option} {value}" if value else f"by hand (see source), then {option} FILE"
    lead = f"      {key:<9}"
    # URLs stay whole on their line, so that they can be copied
    return textwrap.fill(
        str(value),
        _WIDTH,
        initial_indent=lead,
        subsequent_indent=" " * len(lead),
        break_on_hyphens=False,
        break_long_words=False,
    )


def _text(tables: dict[str, dict[str, list]]) -> str:
    lines = []
    for kind, table in tables.items():
        lines.append(kind)
        for name, rows in table.items():
            lines.append(f"  {name}" + ("" if rows else ": no published weights recorded"))
            for row in rows:
                lines.append(f"    - {row.title}")
                lines.extend(_field(kind, row, key) for key in _FIELDS if getattr(row, key) or key == "download")
        lines.append("")
    return "\n".join(lines).rstrip() + "\n"


@click.group("weights")
def weights():
    """Published weights: where they are and how to load them.

    Any https URL `fm weights list` shows goes to --pretrained (fm embed, fm probe) or --model (fm
    segment, fm report) as it is: downloaded once into the cache ($FM_CACHE/weights, else
    $XDG_CACHE_HOME/fm3d/weights or ~/.cache/fm3d/weights), verified, then loaded like a local file.

    \b
    Examples:
      fm weights list
      fm embed --example --encoder timm25d --out emb.parquet \\
        --pretrained https://huggingface.co/timm/resnet18.a1_in1k/resolve/main/model.safetensors
    """


@weights.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print the table as JSON.")
def list_weights(as_json: bool):
    """Every registered encoder and segmenter: source, licence, container, SHA-256.

    \b
    Examples:
      fm weights list
      fm weights list --json > weights.json
    """
    tables = _tables()
    if as_json:
        data = {
            kind: {name: [row.to_dict() for row in rows] for name, rows in table.items()}
            for kind, table in tables.items()
        }
        click.echo(json.dumps(data, indent=1))
    else:
        click.echo(_text(tables), nl=False)
