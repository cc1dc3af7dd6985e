"""Task heads on encoder features: segmentation decoders, test-time adaptation, probes."""
