"""Decoding grounded in the findings: while a report model writes from the measured findings,
every number it writes must be one the findings state, digit for digit (a full stop may follow) or,
for a model whose config says number_forms "rounded", also rounded as a report writes it ("32 mL"
for 31.7 mL, "5.9 cm" for 58.7 mm), and every brain region it names must be one a measured lesion lies in (on the side it names). A transformers
LogitsProcessor masks each token that would break either rule, so a small model that has learnt
*what* to say where cannot garble a measurement or fall back on the commonest lobe. What it
picks among the grounded values is still its own choice, and the faithfulness guard
(fm.report.faithfulness) still checks that choice against the findings.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import re

import torch
from transformers import LogitsProcessor

from fm.core.findings import Findings, Laterality
from fm.lm.prompts import findings_text
from fm.report.faithfulness import REGIONS
from fm.report.template_narrative import lesion_character, side_of, ventricles

_NUMBER = re.compile(r"\d+(?:\.\d+)?")
_RUN = re.compile(r"\d[\d.]*")  # a number as it is being written: digits and points from a digit on
_WRITING = re.compile(r"\d[\d.]*\Z")
_TAIL_TOKENS = 12  # enough tokens to hold the longest number or region word being written
#: the word that names each region in a text
REGION_WORDS = {region: region.split()[0] for region in REGIONS}


@dataclasses.dataclass(frozen=True)
class Grounding:
    numbers: frozenset[str]  # as the findings write them ('31.7', '2', '548.1') and their roundings ('32', '5.9' cm)
    # as the findings write them: only these may end a sentence ("The count is 2."); a rounding is
    # written before its unit, so a full stop after one is a number cut short ('4.' of 4.3 mL)
    verbatim: frozenset[str]
    region_words: frozenset[str]  # of the regions the lesions lie in
    sided_regions: frozenset[tuple[str, str]]  # ('left', 'parietal'): a side and a region word, as a lesion has them

    @classmethod
    def of(cls, findings: Findings, rounded: bool = False) -> "Grounding":
        """The grounding of `findings`; `rounded`: their measurements may also be written rounded
        (rounded_forms), not only digit for digit."""
        words = {REGION_WORDS[lesion.region] for lesion in findings.lesions if lesion.region in REGION_WORDS}
        sided = {
            (side_of(lesion), REGION_WORDS[lesion.region])
            for lesion in findings.lesions
            if lesion.region in REGION_WORDS and lesion.laterality != Laterality.bilateral
        }
        verbatim = frozenset(_NUMBER.findall(findings_text(findings)))
        numbers = verbatim | rounded_forms(findings) if rounded else verbatim
        return cls(numbers, verbatim, frozenset(words), frozenset(sided))

    def to_json(self) -> str:
        """The grounding as a request to the vLLM server carries it (fm.serve.vllm_plugin reads it)."""
        return json.dumps(
            {
                "numbers": sorted(self.numbers),
                "verbatim": sorted(self.verbatim),
                "region_words": sorted(self.region_words),
                "sided_regions": sorted(list(pair) for pair in self.sided_regions),
            }
        )

    @classmethod
    def from_json(cls, text: str) -> "Grounding":
        data = json.loads(text)
        sided = frozenset(tuple(pair) for pair in data["sided_regions"])
        numbers = frozenset(data["numbers"])
        verbatim = frozenset(data.get("verbatim", numbers))  # a request from before rounded forms
        return cls(numbers, verbatim, frozenset(data["region_words"]), sided)

    @functools.cached_property
    def prefixes(self) -> frozenset[str]:
        return frozenset(number[:end] for number in self.numbers for end in range(1, len(number) + 1))

    def complete(self, run: str) -> bool:
        """Is `run` (digits and points) a whole grounded number, or a verbatim one and a full stop?"""
        return run in self.numbers or (run.endswith(".") and run[:-1] in self.verbatim)

    def fits(self, text: str) -> bool:
        """Every number in `text` is grounded; the last may still be growing (a prefix)."""
        runs = list(_RUN.finditer(text))
        for index, run in enumerate(runs):
            growing = index == len(runs) - 1 and run.end() == len(text)
            if not (self.complete(run.group()) or (growing and run.group() in self.prefixes)):
                return False
        return True

    def names_banned_region(self, tail: str, text: str) -> bool:
        """Does `text` finish a region word that no lesion lies in, or one after a side that no
        lesion in that region has?"""
        for match in _REGION_WORD.finditer(tail + text):
            if match.end() <= len(tail):
                continue
            side, word = (match.group(1) or "").lower(), match.group(2).lower()
            if word not in self.region_words or (side and (side, word) not in self.sided_regions):
                return True
        return False


def rounded_forms(findings: Findings) -> set[str]:
    """Each measurement of `findings` as a report may round it: to whole units, and a length in mm
    also in cm, to one decimal and whole. Rounded from the measured values, not from their
    one-decimal text (31.46 mL is "31", never "32"), as the guard (fm.report.quantities) checks them;
    the guard also checks the unit that follows."""
    volumes = [structure.volume_ml for structure in findings.structures if structure.volume_ml is not None]
    lengths = []
    for lesion in findings.lesions:
        character = lesion_character(lesion)
        parts = (character[key] for key in ("oedema_ml", "necrotic_ml", "enhancing_ml", "core_ml"))
        volumes += [lesion.volume_ml, *(part for part in parts if part is not None)]
        lengths += [lesion.longest_diameter_mm, lesion.short_axis_mm]
    judged = ventricles(findings)
    shares = [100 * judged[2]] if judged else []
    forms = {f"{value:.0f}" for value in volumes + lengths + shares}
    return forms | {f"{length / 10:.{decimals}f}" for length in lengths for decimals in (0, 1)}


_REGION_WORD = re.compile(
    r"(?:\b(left|right)\s+)?\b(" + "|".join(sorted(set(REGION_WORDS.values()))) + r")(?![a-z])", re.I
)


class GroundedDecoding(LogitsProcessor):
    """Masks every token after which the generated text would hold a number not in the grounding
    (or not on its way to one), or name a region no lesion lies in. `grounding`: one for every row
    of the batch, or one per row (None leaves that row free: a batch may mix scans and tasks).
    `prompt_length`: where the generated tokens start in input_ids."""

    def __init__(self, tokenizer, grounding: Grounding | list[Grounding | None], prompt_length: int):
        self.tokenizer, self.grounding, self.prompt_length = tokenizer, grounding, prompt_length

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        for row in range(input_ids.shape[0]):
            grounding = self.grounding[row] if isinstance(self.grounding, list) else self.grounding
            if grounding is not None:
                scores[row] = mask_row(self.tokenizer, grounding, input_ids[row, self.prompt_length :], scores[row])
        return scores


def mask_row(
    tokenizer, grounding: Grounding, generated: torch.LongTensor | list[int], scores: torch.Tensor
) -> torch.Tensor:
    """One row's next-token `scores` with every token masked that would break the grounding after
    the `generated` tokens (in process, and in the vLLM server's plugin, fm.serve.vllm_plugin)."""
    tail = tokenizer.decode(list(generated)[-_TAIL_TOKENS:], skip_special_tokens=True)
    running = _WRITING.search(tail)  # a number still being written at the very end?
    partial = running.group() if running else ""
    if partial and not grounding.complete(partial):
        keep = torch.zeros_like(scores, dtype=torch.bool)  # only its continuation may follow
    else:
        keep = torch.ones_like(scores, dtype=torch.bool)
    for token_id, text in _rule_tokens(tokenizer).items():
        if token_id < keep.shape[0]:
            keep[token_id] = grounding.fits(partial + text) and not grounding.names_banned_region(tail, text)
    if not keep.any() and tokenizer.eos_token_id is not None:
        # a number no grounded one continues (sampling can write one): end the text rather than
        # leave no token at all, which sampling cannot draw from
        keep[tokenizer.eos_token_id] = True
    return scores.masked_fill(~keep, float("-inf"))


@functools.lru_cache(maxsize=8)  # per tokenizer: a scan of its whole vocabulary, not of each generation
def _rule_tokens(tokenizer) -> dict[int, str]:
    """The tokens that can break a rule, with their text: those with a digit or a point, and those
    whose first run of letters can finish a region's word (all others end a number, which
    GroundedDecoding checks, and name no region)."""
    endings = {word[start:] for word in REGION_WORDS.values() for start in range(len(word))}
    pieces = tokenizer.convert_ids_to_tokens(list(range(len(tokenizer))))
    checked = {}
    for token_id, piece in enumerate(pieces):
        text = tokenizer.convert_tokens_to_string([piece])
        letters = re.match(r"[^a-z]*([a-z-]*)", text.lower()).group(1)
        if re.search(r"[\d.]", text) or letters in endings:
            checked[token_id] = text
    return checked
