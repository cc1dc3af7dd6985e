"""The ground every other part stands on: reading scans (NIfTI, MGZ, NRRD, MHA, DICOM), sessions of
several contrasts, label sets and masks, findings and their measurement, brain regions, the MNI152
template, manifests, checksums, errors and limits. Imports nothing else of this project."""
