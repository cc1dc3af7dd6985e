"""The clinical outputs (DICOM SEG, TID 1500 SR, FHIR DiagnosticReport), read back by readers this
project did not write: highdicom and pydicom for the DICOM objects, fhir.resources for FHIR, and
Debian's dicom3tools (dciodvfy) and dcmtk (dsrdump) as independent validators.

The SEG's pixels are checked against the NIfTI mask through each frame's own DICOM geometry (its
ImagePositionPatient, orientation and pixel spacing), not through fm's array layout code, in
axial, sagittal, coronal and oblique series and an enhanced multi-frame object.
"""

from __future__ import annotations

import copy
import json
import re
import shutil
import subprocess

import highdicom as hd
import nibabel as nib
import numpy as np
import phantoms
import pydicom
import pytest
from click.testing import CliRunner
from fhir.resources.R4B.diagnosticreport import DiagnosticReport
from pydicom.data import get_testdata_file
from pydicom.uid import generate_uid

from fm.cli.fm_cli import main
from fm.clinical.outputs import FHIR_FILE, SEG_FILE, SR_FILE, ClinicalOutputs, write_clinical_outputs
from fm.core.dicom import LPS_TO_RAS
from fm.core.examples import example_paths
from fm.core.findings import Laterality
from fm.core.io import load_volume, save_volume
from fm.core.labels import BRAIN_TUMOUR
from fm.core.measure import measure
from fm.pipeline.report_folder import write_report_folder
from fm.report.document import Report, ReportProvenance


def phantom_labels(ras: np.ndarray) -> np.ndarray:
    """A brain of two hemispheres (midline at x = 10 mm) with a lesion around the phantom's marker
    on the patient's right: enhancing core, oedema around it."""
    centre = np.array([10.0, -5.0, 5.0])
    inside = np.sum(((ras - centre) / [40.0, 45.0, 24.0]) ** 2, axis=-1) < 1
    labels = np.where(inside, np.where(ras[..., 0] < centre[0], 3, 4), 0)
    distance = np.linalg.norm(ras - phantoms.MARKER_RAS, axis=-1)
    labels[distance < 8] = 7
    labels[distance < 4] = 9
    return labels.astype(np.int16)


def provenance(**changes) -> ReportProvenance:
    fields = dict(
        input_file="series",
        input_format="DICOM",
        model_id="fm3d/test-model",
        model_version="test 1",
        model_sha256="0" * 16,
        encoder="none",
        label_set=BRAIN_TUMOUR.name,
        software={},
        device="cpu",
        threads=1,
        etta=False,
        reoriented=True,
        resampled=False,
        network_spacing_mm=(1.0, 1.0, 1.0),
        timings_s={},
        created_utc="2026-12-01T00:00:00+00:00",
    )
    return ReportProvenance(**{**fields, **changes})


def dicom_phantom(tmp_path, layout: str, lesion: bool = True):
    """A DICOM series of the phantom in `layout`, its Volume, labels on its grid and the Report."""
    if layout == "oblique":
        array, affine = phantoms.oblique()
    else:
        array, affine = phantoms.relayout(*phantoms.ras_reference(), layout.removeprefix("enhanced-"))
    array = phantoms.as_stored_values(array)
    if layout.startswith("enhanced-"):
        tmp_path.mkdir(parents=True, exist_ok=True)
        source = tmp_path / "enhanced.dcm"
        phantoms.enhanced_multiframe(array, affine).save_as(source, enforce_file_format=True)
    else:
        source = phantoms.write_series(tmp_path / "series", phantoms.dicom_slices(array, affine))
    volume = load_volume(source)
    ijk = np.stack(np.meshgrid(*[np.arange(n) for n in volume.shape], indexing="ij"), axis=-1)
    labels = phantom_labels(volume.voxel_to_ras(ijk))
    if not lesion:
        labels[np.isin(labels, list(BRAIN_TUMOUR.lesion))] = 4
    report = Report.from_findings(measure(labels, volume, BRAIN_TUMOUR), provenance())
    return source, volume, labels, report


def vendor_series(tmp_path):
    """A series built from a scanner's own header (pydicom's MR_small.dcm, a Toshiba MR slice with
    its vendor, institution and operator attributes): 12 copies stepped along the slice normal."""
    template = pydicom.dcmread(get_testdata_file("MR_small.dcm"))
    normal = np.cross(*np.reshape(np.array(template.ImageOrientationPatient, float), (2, 3)))
    folder = tmp_path / "vendor"
    folder.mkdir(parents=True)
    for k in range(12):
        ds = copy.deepcopy(template)
        ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
        ds.InstanceNumber = k + 1
        position = np.array(template.ImagePositionPatient, float) + k * float(template.SliceThickness) * normal
        ds.ImagePositionPatient = [f"{v:.4f}" for v in position]
        ds.save_as(folder / f"{k:03d}.dcm", enforce_file_format=True)
    volume = load_volume(folder)
    ijk = np.stack(np.meshgrid(*[np.arange(n) for n in volume.shape], indexing="ij"), axis=-1)
    ras = volume.voxel_to_ras(ijk)
    centre = ras.reshape(-1, 3).mean(axis=0)
    labels = np.where(ras[..., 0] < centre[0], 3, 4).astype(np.int16)
    labels[np.linalg.norm(ras - centre - [3.0, 0.0, 0.0], axis=-1) < 3.5] = 9
    report = Report.from_findings(measure(labels, volume, BRAIN_TUMOUR), provenance())
    return folder, volume, labels, report


def frame_geometry(seg: pydicom.Dataset, index: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(position, row cosine, column cosine) in LPS and (row, column) spacing of SEG frame `index`."""
    shared = seg.SharedFunctionalGroupsSequence[0]
    frame = seg.PerFrameFunctionalGroupsSequence[index]
    position = np.array(frame.PlanePositionSequence[0].ImagePositionPatient, float)
    orientation = np.array(shared.PlaneOrientationSequence[0].ImageOrientationPatient, float)
    spacing = np.array(shared.PixelMeasuresSequence[0].PixelSpacing, float)
    return position, orientation, spacing


def mask_under_frame(mask_affine: np.ndarray, data: np.ndarray, seg: pydicom.Dataset, position) -> np.ndarray:
    """The mask's labels (`data` on `mask_affine`) at the centres of the pixels of a SEG frame at
    `position` (LPS mm), nearest voxel."""
    _, orientation, (row_spacing, column_spacing) = frame_geometry(seg, 0)
    position = np.asarray(position, float)
    rows, columns = np.meshgrid(np.arange(seg.Rows), np.arange(seg.Columns), indexing="ij")
    lps = (
        position
        + columns[..., None] * column_spacing * orientation[:3]
        + rows[..., None] * row_spacing * orientation[3:]
    )
    ras = lps @ LPS_TO_RAS[:3, :3].T
    to_voxel = np.linalg.inv(mask_affine)
    ijk = np.rint(ras @ to_voxel[:3, :3].T + to_voxel[:3, 3]).astype(int)
    assert np.all((ijk >= 0) & (ijk < data.shape)), "a SEG frame lies outside the scan"
    return data[tuple(np.moveaxis(ijk, -1, 0))]


def source_positions(source) -> dict[tuple[str, int | None], np.ndarray]:
    """(SOPInstanceUID, frame number or None) -> ImagePositionPatient of every source image."""
    files = [source] if source.is_file() else sorted(source.iterdir())
    out = {}
    for path in files:
        ds = pydicom.dcmread(path, stop_before_pixels=True)
        if "PerFrameFunctionalGroupsSequence" in ds:
            for number, group in enumerate(ds.PerFrameFunctionalGroupsSequence, start=1):
                out[(ds.SOPInstanceUID, number)] = np.array(group.PlanePositionSequence[0].ImagePositionPatient, float)
        else:
            out[(ds.SOPInstanceUID, None)] = np.array(ds.ImagePositionPatient, float)
    return out


def check_seg_against_mask(seg_path, mask_path, source, label_names: dict[int, str]) -> None:
    """Every frame of every label's segment sits on a source image's position and equals the
    NIfTI mask there; together the frames hold every voxel of the label. With one lesion, its
    segment ("lesion 1") equals the mask's lesion labels likewise."""
    seg = pydicom.dcmread(seg_path)
    mask = nib.load(str(mask_path))
    read = hd.seg.segread(seg_path)  # highdicom accepts the object it is given
    assert read.number_of_segments == len(seg.SegmentSequence)
    numbers = {item.SegmentLabel: int(item.SegmentNumber) for item in seg.SegmentSequence}
    lesions = [name for name in numbers if name.startswith("lesion ")]
    assert len(lesions) <= 1, "the check knows one lesion's voxels: the mask's lesion labels"
    label_names = {**label_names, **({tuple(BRAIN_TUMOUR.lesion): lesions[0]} if lesions else {})}
    positions = source_positions(source) if source is not None else None  # None: the source UIDs were replaced
    frames = seg.pixel_array.reshape(int(seg.NumberOfFrames), seg.Rows, seg.Columns)
    found = dict.fromkeys(label_names, 0)
    data, under = np.asarray(mask.dataobj), {}
    for index, group in enumerate(seg.PerFrameFunctionalGroupsSequence):
        reference = group.DerivationImageSequence[0].SourceImageSequence[0]
        frame_number = int(reference.ReferencedFrameNumber) if "ReferencedFrameNumber" in reference else None
        position = frame_geometry(seg, index)[0]
        if positions is not None:
            np.testing.assert_allclose(
                positions[(reference.ReferencedSOPInstanceUID, frame_number)], position, atol=1e-3
            )
        segment = int(group.SegmentIdentificationSequence[0].ReferencedSegmentNumber)
        for label, name in label_names.items():
            if numbers.get(name) == segment:
                key = tuple(position.round(3))
                if key not in under:  # frames of several segments share a position
                    under[key] = mask_under_frame(mask.affine, data, seg, position)
                expected = np.isin(under[key], label)
                np.testing.assert_array_equal(frames[index].astype(bool), expected, err_msg=f"{name}, frame {index}")
                found[label] += int(expected.sum())
    assert found == {label: int(np.isin(data, label).sum()) for label in label_names}
    assert sum(found.values()) > 0


def sr_groups(path) -> dict[str, dict[str, tuple[float, str]]]:
    """Tracking identifier -> measurement name -> (value, unit) of a TID 1500 SR, read by highdicom."""
    sr = hd.sr.srread(path)
    return {
        group.tracking_identifier: {m.name.meaning: (m.value, m.unit.value) for m in group.get_measurements()}
        for group in sr.content.get_volumetric_roi_measurement_groups()
    }


def assert_measured(group: dict, name: str, value: float, unit: str) -> None:
    measured, measured_unit = group[name]
    assert (measured, measured_unit) == (pytest.approx(value, rel=1e-9), unit), name


def check_sr_against_findings(sr_path, seg_path, report: Report) -> None:
    groups = sr_groups(sr_path)
    seg = pydicom.dcmread(seg_path, stop_before_pixels=True)
    labels = {int(item.SegmentNumber): item.SegmentLabel for item in seg.SegmentSequence}
    tracking = {int(item.SegmentNumber): item.TrackingUID for item in seg.SegmentSequence}
    segmented = [s for s in report.findings.structures if s.name in labels.values()]
    assert set(groups) == {s.name for s in segmented} | {f"lesion {x.lesion_id}" for x in report.findings.lesions}
    for structure in segmented:
        if structure.volume_ml is None:  # cut by the edge of the image: no volume, as in the report
            assert "Volume" not in groups[structure.name]
        else:
            assert_measured(groups[structure.name], "Volume", structure.volume_ml, "ml")
        assert groups[structure.name]["Probability"][0] == pytest.approx(structure.confidence, rel=1e-6)
    for lesion in report.findings.lesions:
        group = groups[f"lesion {lesion.lesion_id}"]
        assert_measured(group, "Volume", lesion.volume_ml, "ml")
        assert_measured(group, "Long axis", lesion.longest_diameter_mm, "mm")
        assert_measured(group, "Short axis", lesion.short_axis_mm, "mm")
        assert_measured(group, "Probability", lesion.confidence, "1")
    sr = hd.sr.srread(sr_path)
    for group in sr.content.get_volumetric_roi_measurement_groups():
        segment = group.referenced_segment
        assert segment.referenced_sop_instance_uid == seg.SOPInstanceUID
        assert labels[segment.referenced_segment_numbers[0]] == group.tracking_identifier
        assert tracking[segment.referenced_segment_numbers[0]] == group.tracking_uid  # one finding, one UID
        assert segment.source_series_for_segmentation.value == seg.ReferencedSeriesSequence[0].SeriesInstanceUID


def check_fhir_against_findings(path, report: Report, study_uid: str | None) -> DiagnosticReport:
    resource = DiagnosticReport.model_validate_json(path.read_text())  # fhir.resources validates the whole model
    observations = {o.code.text: o for o in resource.contained if o.get_resource_type() == "Observation"}
    for structure in report.findings.structures:
        if structure.volume_ml is not None:
            value = observations[f"Volume of {structure.name}"].valueQuantity
            assert (float(value.value), value.code, value.system) == (
                pytest.approx(structure.volume_ml),
                "mL",
                "http://unitsofmeasure.org",
            )
    for lesion in report.findings.lesions:
        name = f"lesion {lesion.lesion_id}"
        assert float(observations[f"Volume of {name}"].valueQuantity.value) == pytest.approx(lesion.volume_ml)
        diameter = observations[f"Longest diameter of {name}"]
        assert float(diameter.valueQuantity.value) == pytest.approx(lesion.longest_diameter_mm)
        assert diameter.valueQuantity.code == "mm"
        side = {c.code.coding[0].code: c for c in diameter.component}["272741003"]  # SNOMED Laterality
        assert side.valueCodeableConcept.text.split(",")[0] == lesion.laterality.value
    assert resource.status == "preliminary"
    assert "AI draft, not for clinical use" in resource.text.div
    studies = [ref.identifier.value for ref in resource.imagingStudy or []]
    assert studies == ([f"urn:oid:{study_uid}"] if study_uid else [])
    return resource


@pytest.mark.parametrize(
    "layout, lesion",
    [("LPS", True), ("PIR", True), ("LIP", True), ("oblique", True), ("enhanced-LPS", True), ("oblique", False)],
)
def test_seg_sr_and_fhir_agree_with_the_mask_and_findings_in_every_orientation(tmp_path, layout, lesion):
    """Without a lesion no two segments overlap and the SEG is built from a label map, not planes."""
    source, volume, labels, report = dicom_phantom(tmp_path, layout, lesion)
    assert [found.laterality.value for found in report.findings.lesions] == (["right"] if lesion else [])
    out = tmp_path / "out"
    written = write_clinical_outputs(report, volume, labels, BRAIN_TUMOUR, out, ClinicalOutputs(dicom=True, fhir=True))
    assert sorted(written) == sorted([SEG_FILE, SR_FILE, FHIR_FILE])
    mask = save_volume(volume.with_array(labels), tmp_path / "mask.nii.gz")
    check_seg_against_mask(
        out / SEG_FILE,
        mask,
        source,
        {3: "left grey matter", 4: "right grey matter", 7: "peritumoral oedema", 9: "enhancing tumour"},
    )
    check_sr_against_findings(out / SR_FILE, out / SEG_FILE, report)
    seg = pydicom.dcmread(out / SEG_FILE, stop_before_pixels=True)
    check_fhir_against_findings(out / FHIR_FILE, report, seg.StudyInstanceUID)
    first_source = pydicom.dcmread(source if source.is_file() else next(source.iterdir()), stop_before_pixels=True)
    for path in (out / SEG_FILE, out / SR_FILE):
        made = pydicom.dcmread(path, stop_before_pixels=True)
        # patient and study copied from the source, everything that identifies the object new
        for keyword in ("PatientName", "PatientID", "PatientBirthDate", "StudyInstanceUID", "AccessionNumber"):
            assert made[keyword].value == first_source[keyword].value
        assert made.SeriesInstanceUID != first_source.SeriesInstanceUID
        assert made.SOPInstanceUID != first_source.SOPInstanceUID
    lesion_segments = [s for s in seg.SegmentSequence if s.SegmentLabel.startswith("lesion")]
    assert [s.SegmentedPropertyTypeCodeSequence[0].CodeValue for s in lesion_segments] == ["52988006"] * lesion
    left = [s for s in seg.SegmentSequence if s.SegmentLabel == "left grey matter"][0]
    modifier = left.SegmentedPropertyTypeCodeSequence[0].SegmentedPropertyTypeModifierCodeSequence[0]
    assert (modifier.CodeValue, modifier.CodeMeaning) == ("7771000", "Left")
    assert seg.SegmentSequence[0].SegmentAlgorithmName == "fm3d/test-model"


@pytest.mark.parametrize("layout", ["LPS", "enhanced-LPS"])
def test_deidentified_outputs_carry_no_identifier_and_still_point_at_each_other(tmp_path, layout):
    source, volume, labels, report = dicom_phantom(tmp_path, layout)
    clinical = ClinicalOutputs(dicom=True, fhir=True, deidentify=True)
    paths = write_report_folder(report, volume, labels, BRAIN_TUMOUR, tmp_path / "out", clinical=clinical)
    files = [source] if source.is_file() else sorted(source.iterdir())
    original = pydicom.dcmread(files[0], stop_before_pixels=True)
    identifiers = [*phantoms.PHI.values(), original.StudyInstanceUID, original.SeriesInstanceUID]
    identifiers += [original.FrameOfReferenceUID, *(pydicom.dcmread(f).SOPInstanceUID for f in files)]
    for name in (SEG_FILE, SR_FILE, FHIR_FILE):
        content = paths[name].read_bytes()
        leaked = [value for value in identifiers if str(value).encode() in content]
        assert not leaked, f"{name} carries {leaked}"
    seg = pydicom.dcmread(paths[SEG_FILE], stop_before_pixels=True)
    sr = pydicom.dcmread(paths[SR_FILE], stop_before_pixels=True)
    for made in (seg, sr):
        assert (made.PatientIdentityRemoved, made.PatientName, made.PatientID) == ("YES", "", "")
        assert made.DeidentificationMethodCodeSequence[0].CodeValue == "113100"  # PS3.15 basic profile
    assert sr.StudyInstanceUID == seg.StudyInstanceUID
    evidence = {
        item.SeriesInstanceUID for item in sr.CurrentRequestedProcedureEvidenceSequence[0].ReferencedSeriesSequence
    }
    assert {seg.SeriesInstanceUID, seg.ReferencedSeriesSequence[0].SeriesInstanceUID} <= evidence
    fhir = check_fhir_against_findings(paths[FHIR_FILE], report, seg.StudyInstanceUID)
    assert fhir.subject is None
    provenance_text = json.loads(paths["report.json"].read_text())["provenance"]["deidentification"]
    assert "PS3.15" in provenance_text
    # the geometry survives de-identification: the SEG still lies on the (renamed) source's frames
    check_seg_against_mask(paths[SEG_FILE], paths["mask.nii.gz"], None, {3: "left grey matter", 4: "right grey matter"})


def test_deidentified_outputs_of_a_vendor_header_leave_out_everything_that_names_someone(tmp_path):
    folder, volume, labels, report = vendor_series(tmp_path)
    original = pydicom.dcmread(folder / "000.dcm", stop_before_pixels=True)
    out = tmp_path / "out"
    written = write_clinical_outputs(
        report, volume, labels, BRAIN_TUMOUR, out, ClinicalOutputs(dicom=True, fhir=True, deidentify=True)
    )
    identifying = ["PatientName", "PatientID", "PatientBirthDate", "InstitutionName", "OperatorsName", "StationName"]
    identifying += ["DeviceSerialNumber", "StudyInstanceUID", "SeriesInstanceUID", "AccessionNumber", "StudyID"]
    values = {k: str(original[k].value) for k in identifying if k in original}
    values = {k: v for k, v in values.items() if len(set(v)) > 1}  # "000000000" is in any file
    assert len(values) >= 7  # the header really carries them
    for name, path in written.items():
        content = path.read_bytes()
        leaked = {k: v for k, v in values.items() if v.encode() in content}
        assert not leaked, f"{name} carries {leaked}"
    check_seg_against_mask(
        out / SEG_FILE, save_volume(volume.with_array(labels), tmp_path / "mask.nii.gz"), None, {3: "left grey matter"}
    )


def test_an_empty_segmentation_gives_no_seg_or_sr_but_still_a_fhir_report(tmp_path):
    _, volume, labels, _ = dicom_phantom(tmp_path, "LPS")
    empty = np.zeros_like(labels)
    report = Report.from_findings(measure(empty, volume, BRAIN_TUMOUR), provenance())
    written = write_clinical_outputs(
        report, volume, empty, BRAIN_TUMOUR, tmp_path / "out", ClinicalOutputs(dicom=True, fhir=True)
    )
    assert list(written) == [FHIR_FILE]
    check_fhir_against_findings(
        written[FHIR_FILE], report, pydicom.dcmread(next((tmp_path / "series").iterdir())).StudyInstanceUID
    )


def test_a_lesion_across_the_midline_keeps_its_word_and_is_coded_by_its_larger_side(tmp_path):
    _, volume, labels, report = dicom_phantom(tmp_path, "LPS")
    lesion = report.findings.lesions[0].model_copy(
        update={"laterality": Laterality.midline_crossing, "right_fraction": 0.3}
    )
    findings = report.findings.model_copy(update={"lesions": [lesion]})
    report = report.model_copy(update={"findings": findings})
    written = write_clinical_outputs(report, volume, labels, BRAIN_TUMOUR, tmp_path / "out", ClinicalOutputs(fhir=True))
    resource = DiagnosticReport.model_validate_json(written[FHIR_FILE].read_text())
    volume_of_lesion = [
        o for o in resource.contained if getattr(o, "code", None) and o.code.text == "Volume of lesion 1"
    ][0]
    side = {c.code.coding[0].code: c for c in volume_of_lesion.component}["272741003"].valueCodeableConcept
    assert (side.coding[0].display, side.text) == ("Left", "midline-crossing, mostly left")


def test_a_fhir_report_needs_nothing_a_seg_needs(tmp_path):
    """A series a SEG cannot point at (no FrameOfReferenceUID) still gets its FHIR report."""
    array, affine = phantoms.ras_reference()
    slices = phantoms.dicom_slices(phantoms.as_stored_values(array), affine)
    for ds in slices:
        del ds.FrameOfReferenceUID
    volume = load_volume(phantoms.write_series(tmp_path / "series", slices))
    ijk = np.stack(np.meshgrid(*[np.arange(n) for n in volume.shape], indexing="ij"), axis=-1)
    labels = phantom_labels(volume.voxel_to_ras(ijk))
    report = Report.from_findings(measure(labels, volume, BRAIN_TUMOUR), provenance())
    written = write_clinical_outputs(report, volume, labels, BRAIN_TUMOUR, tmp_path / "out", ClinicalOutputs(fhir=True))
    check_fhir_against_findings(written[FHIR_FILE], report, slices[0].StudyInstanceUID)


def test_clinical_options_refuse_what_cannot_be_written(tmp_path):
    nifti = phantoms.write_nifti(tmp_path / "scan.nii.gz", *phantoms.ras_reference())
    slices = phantoms.dicom_slices(phantoms.as_stored_values(phantoms.ras_reference()[0]), phantoms.ras_reference()[1])
    for ds in slices:
        del ds.FrameOfReferenceUID
    unplaceable = phantoms.write_series(tmp_path / "no_frame_of_reference", slices)
    runner = CliRunner()
    for args, message in [
        ([str(unplaceable)], "has no FrameOfReferenceUID, which a DICOM SEG and SR need"),
        ([str(nifti), "--dicom"], "the first scan must be DICOM"),
        ([str(nifti), "--deidentify"], "--deidentify applies to the DICOM and FHIR outputs"),
    ]:
        done = runner.invoke(main, ["report", *args, "--out", str(tmp_path / "out")])
        assert done.exit_code != 0 and message in done.output, done.output
        assert "Traceback" not in done.output
    assert not (tmp_path / "out").exists()
    # in a cohort the session fails, is listed with the reason, and the others would go on
    manifest = tmp_path / "cohort.csv"
    manifest.write_text(f"id,path\nnifti,{nifti}\n")
    done = runner.invoke(main, ["report", "--manifest", str(manifest), "--dicom", "--out", str(tmp_path / "cohort")])
    assert done.exit_code == 1 and "0 reported, 0 skipped, 1 failed" in done.output, done.output
    assert "the first scan must be DICOM" in (tmp_path / "cohort" / "summary.csv").read_text()


@pytest.fixture(scope="module")
def dicom_session_report(tmp_path_factory):
    """The bundled example written as two DICOM series (axial, LPS, as scanners store them) and
    reported end to end by `fm report`, with --fhir: (series folders, report folder)."""
    root = tmp_path_factory.mktemp("dicom_session")
    folders = []
    for path, contrast in zip(example_paths("synthetic-brain"), ("t1c", "flair")):
        image = nib.as_closest_canonical(nib.load(str(path)))  # relayout starts from RAS
        array, affine = phantoms.relayout(np.asarray(image.dataobj, np.float32), image.affine, "LPS")
        slices = phantoms.dicom_slices(phantoms.as_stored_values(array), affine, description=contrast)
        folders.append(phantoms.write_series(root / contrast, slices))
    out = root / "report"
    done = CliRunner().invoke(
        main, ["report", *map(str, folders), "--contrasts", "t1c,flair", "--fhir", "--no-llm", "--out", str(out)]
    )
    assert done.exit_code == 0, done.output
    return folders, out


def test_fm_report_on_a_dicom_session_writes_seg_sr_and_fhir_that_agree_with_its_report(dicom_session_report):
    folders, out = dicom_session_report  # DICOM outputs are on by default for DICOM input
    report = Report.from_json((out / "report.json").read_text())
    assert [lesion.laterality.value for lesion in report.findings.lesions] == ["right"]
    check_seg_against_mask(
        out / SEG_FILE, out / "mask.nii.gz", folders[0], {**BRAIN_TUMOUR.structures, **BRAIN_TUMOUR.lesion}
    )
    check_sr_against_findings(out / SR_FILE, out / SEG_FILE, report)
    seg = pydicom.dcmread(out / SEG_FILE, stop_before_pixels=True)
    first_source = pydicom.dcmread(next(folders[0].iterdir()), stop_before_pixels=True)
    assert [float(v) for v in first_source.ImageOrientationPatient] == [1, 0, 0, 0, 1, 0]  # axial, as scanners write
    assert seg.ReferencedSeriesSequence[0].SeriesInstanceUID == first_source.SeriesInstanceUID
    check_fhir_against_findings(out / FHIR_FILE, report, first_source.StudyInstanceUID)


# ----------------------------------------------------------------------------------------------
# Independent validators: Debian's dicom3tools and dcmtk (tools/dicom-validators installs them)


def _tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.fail(
            f"{name} is not installed: run tools/dicom-validators (apt dicom3tools dcmtk), "
            "or leave it out: -m 'not dicom_validators'"
        )
    return path


@pytest.mark.dicom_validators
@pytest.mark.parametrize("source", ["example session", "oblique", "enhanced-LPS", "vendor header"])
def test_dciodvfy_and_dsrdump_accept_the_outputs(tmp_path, source, dicom_session_report):
    if source == "example session":
        out = dicom_session_report[1]
        report = Report.from_json((out / "report.json").read_text())
    elif source == "vendor header":
        _, volume, labels, report = vendor_series(tmp_path)
        out = tmp_path / "out"
        write_clinical_outputs(report, volume, labels, BRAIN_TUMOUR, out, ClinicalOutputs(dicom=True))
    else:
        _, volume, labels, report = dicom_phantom(tmp_path, source)
        out = tmp_path / "out"
        write_clinical_outputs(report, volume, labels, BRAIN_TUMOUR, out, ClinicalOutputs(dicom=True))
    for name, iod in ((SEG_FILE, "Segmentation"), (SR_FILE, "Comprehensive3DSR")):
        checked = subprocess.run([_tool("dciodvfy"), str(out / name)], capture_output=True, text=True)
        lines = (checked.stdout + checked.stderr).splitlines()
        assert iod in lines, lines  # dciodvfy names the IOD it checked against
        errors = [line for line in lines if line.startswith("Error")]
        assert not errors, f"dciodvfy {name}:\n" + "\n".join(lines)
    dumped = subprocess.run([_tool("dsrdump"), str(out / SR_FILE)], capture_output=True, text=True)
    assert dumped.returncode == 0, dumped.stderr
    assert "Imaging Measurement Report" in dumped.stdout
    for lesion in report.findings.lesions:
        assert f'"lesion {lesion.lesion_id}"' in dumped.stdout
    numbers = [float(v) for v in re.findall(r'NUM:\(,,"Volume"\)="([0-9.eE+-]+)" \(ml,UCUM', dumped.stdout)]
    expected = [s.volume_ml for s in report.findings.structures if s.volume_ml is not None and s.volume_ml > 0]
    expected += [lesion.volume_ml for lesion in report.findings.lesions]
    assert sorted(numbers) == pytest.approx(sorted(expected), rel=1e-9)
