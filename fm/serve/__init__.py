"""Generation backends for the report model (in process, or a vLLM server fed prompt embeddings), the
vLLM export, server and its grounded-decoding plugin. Kept light: the plugin runs in the vLLM
environment, which has neither nibabel nor SimpleITK."""

from fm._moved import forward_old_names

__getattr__ = forward_old_names(__name__)  # fm.serve was a module before the subpackages
