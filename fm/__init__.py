"""fm: 3D medical image encoders, segmentation-grounded reports and a language model that sees the scan.

Importing fm stays light (the report pipeline starts without torch). The language model's classes
(fm.lm.modeling) are registered with transformers' Auto classes as soon as transformers loads them, so
`AutoModelForImageTextToText.from_pretrained(folder)` works after `import fm`, without remote code.
"""

import importlib.abc
import importlib.machinery
import os
import sys

from fm import _moved
from fm.core.version import __version__ as __version__

_moved.install()  # old flat module paths (fm.io, fm.model, ...) keep working for one release

_AUTO_MODULE = "transformers.models.auto.modeling_auto"  # where AutoModel* live
_registered = False


def register_with_transformers() -> None:
    """AutoConfig, AutoModel and AutoModelForImageTextToText learn model_type "fm3d" (once)."""
    global _registered
    if _registered:
        return
    model_module = sys.modules.get("fm.lm.modeling")
    if model_module is not None and not hasattr(model_module, "FMForReportGeneration"):
        return  # fm.lm.modeling is loading transformers right now: it registers itself once defined
    _registered = True  # first: importing fm.lm.modeling loads the Auto modules again through the hook
    from transformers import AutoConfig, AutoModel, AutoModelForImageTextToText

    from fm.lm.configuration import MODEL_TYPE, FMConfig
    from fm.lm.modeling import FMForReportGeneration

    AutoConfig.register(MODEL_TYPE, FMConfig, exist_ok=True)
    AutoModel.register(FMConfig, FMForReportGeneration, exist_ok=True)
    AutoModelForImageTextToText.register(FMConfig, FMForReportGeneration, exist_ok=True)


class _RegisterAfterImport(importlib.abc.MetaPathFinder):
    """Runs the registration right after transformers' Auto model module finishes loading."""

    def find_spec(self, fullname, path, target=None):
        if fullname != _AUTO_MODULE:
            return None
        spec = importlib.machinery.PathFinder.find_spec(fullname, path)
        if spec is None or spec.loader is None:
            return spec
        load = spec.loader.exec_module

        def exec_then_register(module):
            load(module)
            register_with_transformers()

        spec.loader.exec_module = exec_then_register
        return spec


if os.environ.get("FM_VLLM_PLUGIN"):
    pass  # inside a vLLM server (fm.serve.vllm_plugin): its transformers has no use for fm's model classes
elif _AUTO_MODULE in sys.modules:
    register_with_transformers()
else:
    sys.meta_path.insert(0, _RegisterAfterImport())
