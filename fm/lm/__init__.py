"""The report model: a 3D encoder, a vision adapter and a causal language model as one transformers
model (configuration, modeling), its prompts, grounded decoding, training recipe, the default
bundle's recipe and loading."""
