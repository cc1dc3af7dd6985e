"""3D image encoders (Swin-BOB / Swin-UNETR, AnatCL, Brain-ID) behind one registry."""

#: How a model reference names a Hugging Face Hub repository (as timm writes it); torch-free to import.
HUB_PREFIX = "hf-hub:"
