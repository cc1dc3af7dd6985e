"""What clinical systems take: DICOM SEG, TID 1500 SR, FHIR DiagnosticReport, their codes, and
de-identification (outputs decides which to write)."""

from fm._moved import forward_old_names

__getattr__ = forward_old_names(__name__)  # fm.clinical was a module before the subpackages
