"""`fm export vllm`: the report model's language model as vLLM serves it. The encoder and the
vision adapter stay in this package (fm.serve.backends sends vLLM the prompt embeddings), so what vLLM
needs is the plain causal LM, its tokenizer and, optionally, a LoRA adapter with the key names of
that plain LM:

    OUT/model/   config.json, model.safetensors, generation_config.json, tokenizer files
    OUT/lora/    adapter_config.json, adapter_model.safetensors   (with --lora)
    OUT/python/fm/    this package's Python files, for the server's grounded-decoding plugin (fm.serve.vllm_plugin)
    OUT/export.json   what was exported from where, and the server command

A LoRA trained by `fm train lm` sits on the composite model (keys base_model.model.language_model...)
and may carry the vision adapter as a module to save; vLLM rejects both, so the LM's part is
renamed to the plain model's keys and the rest stays with the in-process model.
"""

from __future__ import annotations

import dataclasses
import json
import re
import shlex
import shutil
from pathlib import Path

from fm.core.errors import InputFileError

SERVED_MODEL = "fm3d-lm"
PLUGIN = "fm.serve.vllm_plugin:GroundedDecodingProcessor"
SERVED_LORA = "fm3d-lora"
_COMPOSITE_PREFIX = "base_model.model.language_model."
_PLAIN_PREFIX = "base_model.model."
_LORA_KEY = re.compile(r"\.(?P<module>[A-Za-z0-9_]+)\.lora_(?:A|B|embedding_A|embedding_B)(?:\.weight)?$")


@dataclasses.dataclass(frozen=True)
class VLLMExport:
    folder: Path
    lora_rank: int | None  # None: no LoRA adapter

    @property
    def model_folder(self) -> Path:
        return self.folder / "model"

    @property
    def lora_folder(self) -> Path | None:
        return self.folder / "lora" if self.lora_rank else None

    def server_args(self, host: str = "127.0.0.1", port: int = 8000) -> list[str]:
        """The api_server's arguments: float32 (what the in-process model computes in, so greedy
        text agrees token for token), prompt embeddings on, the LoRA adapter as its own model name."""
        args = [
            "-m",
            "vllm.entrypoints.openai.api_server",
            "--model",
            str(self.model_folder),
            "--served-model-name",
            SERVED_MODEL,
            "--enable-prompt-embeds",
            "--logits-processors",
            PLUGIN,
            "--dtype",
            "float32",
            "--host",
            host,
            "--port",
            str(port),
        ]
        if self.lora_rank:
            args += [
                "--enable-lora",
                "--max-lora-rank",
                str(max(8, self.lora_rank)),
                "--lora-modules",
                f"{SERVED_LORA}={self.lora_folder}",
            ]
        return args

    def server_environment(self) -> dict[str, str]:
        """What the server's process needs in its environment: the plugin on its path, a KV cache."""
        return {"PYTHONPATH": str(self.folder / "python"), "FM_VLLM_PLUGIN": "1", "VLLM_CPU_KVCACHE_SPACE": "1"}

    def server_command(self, python: str = "VLLM_VENV/bin/python", host: str = "127.0.0.1", port: int = 8000) -> str:
        environment = " ".join(f"{name}={shlex.quote(value)}" for name, value in self.server_environment().items())
        return f"{environment} {shlex.join([python, *self.server_args(host, port)])}"

    @classmethod
    def read(cls, folder: str | Path) -> "VLLMExport":
        folder = Path(folder)
        record = folder / "export.json"
        if not record.is_file():
            raise InputFileError(folder, "is not an `fm export vllm` folder: it has no export.json")
        return cls(folder, json.loads(record.read_text())["lora_rank"])


def export_for_vllm(report_model, out: str | Path, lora: str | Path | None = None, source: str = "") -> VLLMExport:
    """Write `report_model`'s language model (and the LoRA adapter at `lora`, a peft folder on
    the composite model or on its language model) to `out` for vLLM. `out` must not hold files."""
    out = Path(out).resolve()  # the server command names it, from wherever it is run
    if out.exists() and any(out.iterdir()):
        raise InputFileError(out, "is not empty: give a new folder for the export")
    model_folder = out / "model"
    report_model.language_model.save_pretrained(model_folder)
    report_model.tokenizer.save_pretrained(model_folder)
    _write_stop_ids(model_folder, report_model.generation_config.eos_token_id)
    _copy_plugin_sources(out / "python" / "fm")
    rank = _write_plain_lora(Path(lora), out / "lora", model_folder) if lora else None
    exported = VLLMExport(out, rank)
    record = {
        "report_model": source,
        "lora": str(lora) if lora else None,
        "lora_rank": rank,
        "served_model": SERVED_MODEL,
        "served_lora": SERVED_LORA if rank else None,
        "server_command": exported.server_command(),
    }
    (out / "export.json").write_text(json.dumps(record, indent=1) + "\n")
    return exported


def _write_stop_ids(model_folder: Path, eos: int | list[int] | None) -> None:
    """The report model's stop tokens (its chat template's end of turn included) as the served
    model's, so that vLLM ends where transformers ends."""
    from transformers import GenerationConfig

    try:
        config = GenerationConfig.from_pretrained(model_folder)
    except OSError:  # a language model saved without one
        config = GenerationConfig()
    config.eos_token_id = eos
    config.save_pretrained(model_folder)


def _write_plain_lora(source: Path, target: Path, base_folder: Path) -> int:
    """The LoRA adapter at `source` with the plain causal LM's key names, in `target`; its rank."""
    from safetensors.torch import load_file, save_file

    config_path, weights_path = source / "adapter_config.json", source / "adapter_model.safetensors"
    if not (config_path.is_file() and weights_path.is_file()):
        raise InputFileError(source, "is not a peft LoRA folder (adapter_config.json, adapter_model.safetensors)")
    config = json.loads(config_path.read_text())
    weights = load_file(weights_path)
    plain = {}
    for key, tensor in weights.items():
        if key.startswith(_COMPOSITE_PREFIX):  # fm train's: on the composite model
            plain[_PLAIN_PREFIX + key[len(_COMPOSITE_PREFIX) :]] = tensor
        elif key.startswith(_PLAIN_PREFIX + "model.") or key.startswith(_PLAIN_PREFIX + "lm_head."):
            plain[key] = tensor  # already on the plain language model
        # anything else (the vision adapter saved whole) is the in-process model's, not vLLM's
    modules = sorted({match["module"] for key in plain if (match := _LORA_KEY.search(key))})
    if not modules:
        raise InputFileError(source, "holds no LoRA weights on the language model")
    config.update(
        target_modules=modules,
        modules_to_save=None,
        base_model_name_or_path=str(base_folder),
        task_type="CAUSAL_LM",
    )
    target.mkdir(parents=True)
    save_file(plain, target / "adapter_model.safetensors")
    (target / "adapter_config.json").write_text(json.dumps(config, indent=1) + "\n")
    return int(config["r"])


def _copy_plugin_sources(target: Path) -> None:
    """This package's modules, subpackages included (Python files only, not its bundled models), for
    the server's plugin: the vLLM environment does not have this package installed."""
    source = Path(__file__).parents[1]  # fm/, this file being fm/serve/vllm_export.py
    for path in source.rglob("*.py"):
        destination = target / path.relative_to(source)
        destination.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(path, destination)
