"""3D image encoders (Swin-BOB / Swin-UNETR, AnatCL, Brain-ID) behind one registry."""
