"""Grounded decoding inside a vLLM server: a vLLM logits processor that applies
fm.lm.grounded_decoding's rules to each request that carries a grounding (`vllm_xargs`
{"fm_grounding": Grounding.to_json()}, sent by fm.serve.backends.VLLMBackend), and leaves other requests
alone. It runs in the vLLM environment, not this one: `fm export vllm` copies this package's
Python files next to the exported model and the server command loads this class with
--logits-processors fm.serve.vllm_plugin:GroundedDecodingProcessor.
"""

from __future__ import annotations

import torch
from transformers import AutoTokenizer
from vllm.v1.sample.logits_processor import AdapterLogitsProcessor

from fm.lm.grounded_decoding import Grounding, mask_row
from fm.serve.backends import GROUNDING_ARG


class GroundedDecodingProcessor(AdapterLogitsProcessor):
    def __init__(self, vllm_config, device: torch.device, is_pin_memory: bool):
        super().__init__(vllm_config, device, is_pin_memory)
        self.tokenizer = AutoTokenizer.from_pretrained(vllm_config.model_config.tokenizer)

    def is_argmax_invariant(self) -> bool:
        return False  # it changes which token is likeliest, so greedy requests need it too

    def new_req_logits_processor(self, params):
        wire = (params.extra_args or {}).get(GROUNDING_ARG)
        if wire is None:
            return None
        grounding = Grounding.from_json(wire)

        def grounded(output_ids: list[int], logits: torch.Tensor) -> torch.Tensor:
            return mask_row(self.tokenizer, grounding, output_ids, logits)

        return grounded
