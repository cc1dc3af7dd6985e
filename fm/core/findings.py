"""The Findings schema: the contract between segmentation and every report.

Every number carries its unit in its name and where it came from (label id, component id), and
every finding a confidence. Findings are plain data: JSON round-trips exactly, and
`findings_json_schema()` exports the schema for other tools.
"""

from __future__ import annotations

import enum
import json

from pydantic import BaseModel, ConfigDict, Field, computed_field, model_validator

from fm.core.errors import InputError

SCHEMA_VERSION = "1.1"
# 1.1: a structure that reaches the edge of the image has no volume (1.0 kept the part inside it)


class Laterality(str, enum.Enum):
    """Side of a lesion, from the fraction of its volume on each side of the brain's midline
    (see fm.core.measure.LATERALITY_RULES)."""

    left = "left"
    right = "right"
    midline_crossing = "midline-crossing"  # mostly one side, but crosses the midline
    bilateral = "bilateral"  # substantial volume on both sides


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class StructureFinding(_Strict):
    name: str
    label_id: int
    volume_ml: float | None = Field(ge=0, description="None when the structure reaches the edge of the image")
    touches_border: bool = Field(description="reaches the edge of the image: part of it was not imaged, so no volume")
    confidence: float | None = Field(
        ge=0, le=1, description="mean probability over the structure; 1 for ground truth; None when not found"
    )

    @model_validator(mode="after")
    def _no_volume_when_cut(self) -> "StructureFinding":
        if (self.volume_ml is None) != self.touches_border:
            raise ValueError(f"{self.name}: a volume is given exactly when the structure does not reach the image edge")
        return self


class LesionFinding(_Strict):
    lesion_id: int = Field(ge=1, description="1-based, largest lesion first")
    component_id: int = Field(description="id of the connected component in the lesion label map")
    label_ids: list[int]
    volume_ml: float = Field(ge=0)
    subregion_volumes_ml: dict[str, float] = Field(description="nested regions, e.g. whole_tumour > tumour_core")
    centroid_ras_mm: tuple[float, float, float]
    laterality: Laterality
    right_fraction: float = Field(ge=0, le=1, description="fraction of the lesion volume right of the midline")
    region: str = Field(description="lobe-level anatomical region holding most of the lesion")
    longest_diameter_mm: float = Field(ge=0)
    short_axis_mm: float = Field(ge=0, description="longest extent perpendicular to the longest diameter")
    touches_border: bool
    confidence: float = Field(ge=0, le=1)
    volume_interval_ml: tuple[float, float] | None = Field(
        default=None, description="volume from soft (probability-weighted) vs hard masks, when probabilities exist"
    )


class InputGeometry(_Strict):
    """The input file's own grid, as stored (not the RAS-reordered layout held in memory)."""

    shape: tuple[int, int, int]
    spacing_mm: tuple[float, float, float]
    orientation: str = Field(description="orientation code of the file's voxel axes, e.g. LPS")
    affine_ras: list[list[float]] = Field(description="voxel -> RAS mm of the file's grid")


class Provenance(_Strict):
    source: str = Field(description="'ground truth' or the segmentation model id")
    label_set: str
    software_version: str


class Findings(_Strict):
    schema_version: str = SCHEMA_VERSION
    geometry: InputGeometry
    structures: list[StructureFinding]
    lesions: list[LesionFinding]
    provenance: Provenance

    @computed_field
    @property
    def lesion_count(self) -> int:
        return len(self.lesions)

    @computed_field
    @property
    def multifocal(self) -> bool:
        return len(self.lesions) > 1

    def to_json(self) -> str:
        return self.model_dump_json(indent=2)

    @classmethod
    def from_json(cls, text: str) -> "Findings":
        data = json.loads(text)
        derived = {key: data.pop(key) for key in ("lesion_count", "multifocal") if key in data}
        if data.get("schema_version") == "1.0":  # withhold the partial volume 1.0 kept for a cut structure
            for structure in data.get("structures", []):
                if structure.get("touches_border"):
                    structure["volume_ml"] = None
        findings = cls.model_validate(data)
        for key, value in derived.items():
            if getattr(findings, key) != value:
                raise InputError(f"findings JSON says {key}={value!r}, but its lesions give {getattr(findings, key)!r}")
        return findings

    def structure(self, name: str) -> StructureFinding:
        for s in self.structures:
            if s.name == name:
                return s
        raise KeyError(name)


def findings_json_schema() -> dict:
    return Findings.model_json_schema(mode="serialization")
