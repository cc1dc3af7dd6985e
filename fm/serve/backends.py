"""Where the report model's language model runs: in this process (transformers, the default) or
behind a vLLM server. The encoder, the adapter and the tokenizer always run here: the scan never
leaves this process, only the prompt's embeddings go to the server. A backend takes prompts whose image placeholders are filled with the scan's
visual tokens and returns the text the language model writes after them.

    backend = TransformersBackend(model)                       # or VLLMBackend(model, "http://127.0.0.1:8000")
    request = GenerationRequest(scan_features, prompt_text, grounded_in=findings)
    backend.generate(request).text; backend.batch([request, ...]); for piece in backend.stream(request): ...

vLLM cannot share this environment (it pins its own torch and transformers), so VLLMBackend is a
client of its OpenAI-compatible server: the spliced prompt goes to the Completions endpoint as
`prompt_embeds` (a server started with --enable-prompt-embeds; `fm export vllm` writes the model it
serves and prints the command). The chat endpoint is not used: with prompt embeddings and a LoRA
adapter it kills vLLM's engine (vLLM issue #51122).

Grounded decoding (fm.lm.grounded_decoding) runs on both: in process as a transformers logits
processor, in vLLM as the server's logits-processor plugin (fm.serve.vllm_plugin), which the request's
grounding switches on.
"""

from __future__ import annotations

import abc
import base64
import dataclasses
import io
import json
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import torch

from fm.core.findings import Findings
from fm.lm.grounded_decoding import Grounding

GROUNDING_ARG = "fm_grounding"  # the request argument fm.serve.vllm_plugin reads


@dataclasses.dataclass(frozen=True, eq=False)  # a tensor has no single truth value to compare by
class GenerationRequest:
    """One prompt about one scan: its encoder features (1, C, d, h, w), the prompt text with its
    image placeholders (fm.lm.prompts.build_prompt), how much to write and how."""

    image_features: torch.Tensor
    prompt: str
    max_new_tokens: int = 256
    grounded_in: Findings | None = None  # the findings the text may state numbers and regions from
    asked: str | None = None  # the question the text answers: its subject binds the grounded numbers
    temperature: float = 0.0  # 0: greedy
    seed: int | None = None  # for sampled drafts


@dataclasses.dataclass(frozen=True)
class Generation:
    text: str
    token_ids: tuple[int, ...]  # without the end-of-text token


class GenerationBackend(abc.ABC):
    """Generates the report model's text. `model` is the FMForReportGeneration whose encoder,
    adapter and tokenizer prepare every prompt, whichever process runs its language model."""

    def __init__(self, model):
        self.model = model

    def generate(self, request: GenerationRequest) -> Generation:
        return self.batch([request])[0]

    @abc.abstractmethod
    def batch(self, requests: list[GenerationRequest]) -> list[Generation]:
        """Every request's generation, in order, computed together where the backend can."""

    @abc.abstractmethod
    def stream(self, request: GenerationRequest) -> Iterator[str]:
        """The text of one request, piece by piece as it is written."""

    def close(self) -> None:
        """Release what the backend holds (connections); the model stays usable."""


class TransformersBackend(GenerationBackend):
    """The language model in this process: transformers' generate with its KV cache; a batch is
    left-padded and generated at once, each row grounded in its own findings."""

    def batch(self, requests: list[GenerationRequest]) -> list[Generation]:
        results: list[Generation | None] = [None] * len(requests)
        # generate() takes one set of sampling settings and one features tensor (scans on different
        # grids give maps of different sizes): one call per group that shares both
        groups: dict[tuple, list[int]] = {}
        for index, request in enumerate(requests):
            key = (request.max_new_tokens, request.temperature, request.seed, tuple(request.image_features.shape))
            groups.setdefault(key, []).append(index)
        for (max_new_tokens, temperature, seed, _), indices in groups.items():
            chosen = [requests[i] for i in indices]
            features = torch.cat([request.image_features for request in chosen])
            with torch.random.fork_rng():  # seeded drafts, and the caller's random state untouched
                if seed is not None:
                    torch.manual_seed(seed)
                tokens = self.model.generate_tokens(
                    features,
                    [request.prompt for request in chosen],
                    max_new_tokens,
                    grounded_in=[request.grounded_in for request in chosen],
                    asked=[request.asked for request in chosen],
                    **_sampling(temperature),
                )
            for index, ids in zip(indices, tokens):
                results[index] = Generation(self._decode(ids), tuple(ids))
        return results

    def stream(self, request: GenerationRequest) -> Iterator[str]:
        from transformers import TextIteratorStreamer

        streamer = TextIteratorStreamer(self.model.tokenizer, skip_prompt=True, skip_special_tokens=True)
        failure: list[BaseException] = []

        def write():
            try:
                with torch.random.fork_rng():
                    if request.seed is not None:
                        torch.manual_seed(request.seed)
                    self.model.generate_tokens(
                        request.image_features,
                        [request.prompt],
                        request.max_new_tokens,
                        grounded_in=request.grounded_in,
                        asked=request.asked,
                        streamer=streamer,
                        **_sampling(request.temperature),
                    )
            except BaseException as error:  # raised again in the caller's thread
                failure.append(error)
                streamer.end()

        worker = threading.Thread(target=write, daemon=True)
        worker.start()
        yield from streamer
        worker.join()
        if failure:
            raise failure[0]

    def _decode(self, ids: list[int]) -> str:
        return self.model.tokenizer.decode(ids, skip_special_tokens=True).strip()


class VLLMBackend(GenerationBackend):
    """A client of a vLLM OpenAI-compatible server that serves the model's language model
    (`fm export vllm`), started with --enable-prompt-embeds. `served_model`: the name to ask for
    (a --lora-modules name for the LoRA adapter); default: the server's only base model. Requests
    of a batch are sent together and vLLM batches them."""

    def __init__(self, model, url: str, served_model: str | None = None, timeout_s: float = 600.0, workers: int = 16):
        import httpx

        super().__init__(model)
        self.url = url.rstrip("/")
        self.client = httpx.Client(base_url=self.url, timeout=timeout_s)
        self.workers = workers
        served = self._get("/v1/models")["data"]
        self.served_model = served_model or self._base_model(served)
        # vLLM 0.32 on CPU, LoRA enabled: a step that mixes one request's prompt-embeds prefill with
        # another's decode kills the engine (the embedding's LoRA indices span every token, the
        # embedding sees the decode tokens only); one request at a time never mixes
        self.one_at_a_time = any(entry.get("parent") for entry in served)

    def _base_model(self, served: list[dict]) -> str:
        base = [entry["id"] for entry in served if not entry.get("parent")]  # LoRA modules name a parent
        if len(base) != 1:
            raise VLLMServerError(f"{self.url} serves {[entry['id'] for entry in served]}: name one with served_model")
        return base[0]

    def batch(self, requests: list[GenerationRequest]) -> list[Generation]:
        if len(requests) <= 1 or self.one_at_a_time:
            return [self._complete(request) for request in requests]
        with ThreadPoolExecutor(min(self.workers, len(requests))) as pool:
            return list(pool.map(self._complete, requests))

    def stream(self, request: GenerationRequest) -> Iterator[str]:
        body = {**self._body(request), "stream": True}
        with self.client.stream("POST", "/v1/completions", json=body) as response:
            _raise_for(response, self.url, streamed=True)
            for line in response.iter_lines():
                if not line.startswith("data: ") or line == "data: [DONE]":
                    continue
                piece = json.loads(line[len("data: ") :])["choices"][0]["text"]
                if piece:
                    yield piece

    def close(self) -> None:
        self.client.close()

    def _complete(self, request: GenerationRequest) -> Generation:
        response = self.client.post("/v1/completions", json=self._body(request))
        _raise_for(response, self.url)
        choice = response.json()["choices"][0]
        from fm.lm.modeling import until_end_of_text

        ids = until_end_of_text(list(choice.get("token_ids") or []), self.model.generation_config.eos_token_id)
        return Generation(choice["text"].strip(), tuple(ids))

    def _body(self, request: GenerationRequest) -> dict:
        body = {
            "model": self.served_model,
            "prompt_embeds": encode_prompt_embeds(prompt_embeddings(self.model, request)),
            "max_tokens": request.max_new_tokens,
            "temperature": request.temperature,
            "skip_special_tokens": True,
            "return_token_ids": True,
        }
        if request.seed is not None:
            body["seed"] = request.seed
        if request.grounded_in is not None:  # applied by the server's plugin, fm.serve.vllm_plugin
            rounded = self.model.config.number_forms == "rounded"
            grounding = Grounding.of(request.grounded_in, rounded, request.asked)
            body["vllm_xargs"] = {GROUNDING_ARG: grounding.to_json()}
        return body

    def _get(self, path: str) -> dict:
        import httpx

        try:
            response = self.client.get(path)
        except httpx.HTTPError as error:
            raise VLLMServerError(
                f"no vLLM server answers at {self.url} ({error}); start one with `fm serve`"
            ) from None
        _raise_for(response, self.url)
        return response.json()


class VLLMServerError(RuntimeError):
    """The vLLM server is not there or refused a request: the message says which and why."""


def prompt_embeddings(model, request: GenerationRequest) -> torch.Tensor:
    """The (sequence, hidden) embeddings the language model reads for `request`: the tokenized
    prompt (its begin-of-text token included) with the scan's visual tokens in place."""
    input_ids = model.tokenize_prompts([request.prompt], return_tensors="pt")["input_ids"]
    with torch.no_grad():
        return model.embed_prompt(input_ids, image_features=request.image_features)[0].float().cpu()


def encode_prompt_embeds(embeddings: torch.Tensor) -> str:
    """vLLM's wire format for prompt embeddings: base64 of a torch.save'd tensor."""
    buffer = io.BytesIO()
    torch.save(embeddings.contiguous(), buffer)
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def _sampling(temperature: float) -> dict:
    return {"do_sample": True, "temperature": temperature} if temperature > 0 else {}


def _raise_for(response, url: str, streamed: bool = False) -> None:
    if response.status_code < 400:
        return
    if streamed:
        response.read()
    try:
        message = response.json().get("error", {}).get("message") or response.text
    except ValueError:
        message = response.text
    raise VLLMServerError(f"the vLLM server at {url} answered {response.status_code}: {message.strip()[:500]}")
