"""Where the published weights of each registered encoder come from, as their authors publish them.

One row per published file (a family may have several: a self-supervised backbone, fine-tuned
models from different groups). Each row says where the file is (the URL, Hub id or shared-drive
link exactly as the authors give it), under what licence, in which container, and its SHA-256
when one is published or was read from the host ("unknown" otherwise: a checksum is never made
up). `download` is set only where the file itself sits at a stable https address that
`create_encoder(name, pretrained=URL)` can fetch; a shared-drive page or an archive has to be
fetched and unpacked by hand. `notes` records what was and was not confirmed.

`fm weights list` prints this table; the registry uses it to verify a download whose URL it
lists (`published_sha256`). The segmenters' rows are in heads/published.py.
"""

from __future__ import annotations

import dataclasses
import re

UNKNOWN = "unknown"
NOT_STATED = "not stated"

_SWIN_CONTAINER = (
    "PyTorch pickle (.pt) saved by the MONAI/UKBOB trainer: {'epoch', 'best_acc' (numpy.float64), "
    "'state_dict'} with SwinUNETR keys (swinViT.*, encoder*, decoder*, out.*)"
)
_UKBOB_PAPER = (
    "Bourigault, Jamaludin, Hamdi. UKBOB: One Billion MRI Labeled Masks for Generalizable 3D "
    "Medical Image Segmentation. ICCV 2025, arXiv:2504.06908"
)
_SWIN_UNETR_PAPER = (
    "Tang et al. Self-supervised pre-training of Swin transformers for 3D medical image analysis. "
    "CVPR 2022; Hatamizadeh et al. Swin UNETR, BrainLes 2021, arXiv:2201.01266"
)
_MONAI_RELEASE = "https://github.com/Project-MONAI/MONAI-extra-test-data/releases/download/0.8.1/"
_ANATCL_FOLD0 = (
    "https://gitlab.di.unito.it/barbano/anatcl-pretrained/-/raw/main/0_obhn64_resnet18_amp_yaware_adam_tf_none_"
    "lr0.0001_step_step10_rate0.9_wd5e-05_bsz32_trainall_False_temp0.1_views2_kernel_rbf_sigma2.0_alpha1.0_"
    "anat_desikan_normTrue_subsetTrue_global_lambd1.0_fold0_splits5_trial0/weights.pth"
)
_TIMM_RESNET18 = "https://huggingface.co/timm/resnet18.a1_in1k/resolve/main/model.safetensors"


@dataclasses.dataclass(frozen=True)
class PublishedWeights:
    """One published weights file and what is known about it."""

    name: str  # the registry name the file loads into (create_encoder / create_segmenter)
    title: str  # which release of that name this is
    source: str  # where the authors publish it, verbatim: a URL, hf-hub:org/name or a drive link
    licence: str  # as the authors state it; NOT_STATED where they do not
    format: str  # the container: what torch.load (or safetensors) finds in the file
    sha256: str = UNKNOWN  # of the file as published; UNKNOWN unless published or read from the host
    download: str | None = None  # an https URL `pretrained=` takes as it is; None: fetch by hand
    paper: str = ""
    notes: str = ""  # what was confirmed, what was not, and how to load it
    backbone_only: bool = False  # the file holds the encoder alone: no segmenter of this name can use it
    bundled: bool = False  # installed with fm3d: nothing to download
    released: bool = True  # False: announced by the authors but not (yet) downloadable

    def __post_init__(self):
        if self.sha256 != UNKNOWN and not re.fullmatch(r"[0-9a-f]{64}", self.sha256):
            raise ValueError(f"{self.name}: sha256 must be 64 lowercase hex digits or {UNKNOWN!r}")
        if self.download is not None and not self.download.startswith("https://"):
            raise ValueError(f"{self.name}: download must be an https URL")

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


ENCODER_WEIGHTS: tuple[PublishedWeights, ...] = (
    PublishedWeights(
        name="swin_bob",
        title="Swin-BOB pretrained on UKBOB (72 structures)",
        source="https://github.com/EmmanuelleB985/UK_BOB (project page https://emmanuelleb985.github.io/ukbob)",
        licence="MIT (repository README)",
        format=_SWIN_CONTAINER,
        paper=_UKBOB_PAPER,
        released=False,
        notes=(
            "Not released: the README says the UKBOB-pretrained Swin-UNETR 'will' be provided; GitHub issue "
            "#3 (May 2025) found no download link and quotes the authors that UK Biobank approval (for the "
            "labels) is pending. A Hugging Face Hub release was requested in issue #1 (open); no Hub "
            "repository found. Container as the released BTCV/BRATS files (../shared/refvectors/README.md)."
        ),
    ),
    PublishedWeights(
        name="swin_bob",
        title="MONAI self-supervised Swin transformer (model_swinvit.pt)",
        source=_MONAI_RELEASE + "model_swinvit.pt",
        licence="Apache-2.0 (Project-MONAI/research-contributions; no separate licence for the weights)",
        format=(
            "PyTorch pickle (.pt): {'state_dict'} with keys module.patch_embed.*, module.layers1..4.*, "
            "timm-style mlp.fc1/fc2; the Swin transformer only (loads strictly into swinViT)"
        ),
        download=_MONAI_RELEASE + "model_swinvit.pt",
        paper=_SWIN_UNETR_PAPER,
        backbone_only=True,
        notes=(
            "Linked from research-contributions SwinUNETR/BTCV and Pretrain READMEs. in_channels 1, "
            "feature_size 48. No checksum published."
        ),
    ),
    PublishedWeights(
        name="swin_bob_btcv",
        title="MONAI Swin UNETR/Base fine-tuned on BTCV",
        source=_MONAI_RELEASE + "swin_unetr.base_5000ep_f48_lr2e-4_pretrained.pt",
        licence="Apache-2.0 (Project-MONAI/research-contributions; no separate licence for the weights)",
        format=_SWIN_CONTAINER,
        download=_MONAI_RELEASE + "swin_unetr.base_5000ep_f48_lr2e-4_pretrained.pt",
        paper=_SWIN_UNETR_PAPER,
        notes=(
            "research-contributions SwinUNETR/BTCV README table (Dice 82.25, feature_size 48, 62.1M). Its "
            "test.py reads torch.load(...)['state_dict']; the other top-level keys were not confirmed. "
            "Small (f24) and tiny (f12) variants sit beside it in the same release. No checksum published."
        ),
    ),
    PublishedWeights(
        name="swin_bob_btcv",
        title="MONAI model zoo bundle swin_unetr_btcv_segmentation",
        source=(
            "https://developer.download.nvidia.com/assets/Clara/monai/tutorials/model_zoo/"
            "model_swin_unetr_btcv_segmentation_v1.pt"
        ),
        licence="Apache-2.0 (Project-MONAI/model-zoo)",
        format="PyTorch pickle (.pt): the network's state dict without a wrapper (bundle models/model.pt)",
        download=(
            "https://developer.download.nvidia.com/assets/Clara/monai/tutorials/model_zoo/"
            "model_swin_unetr_btcv_segmentation_v1.pt"
        ),
        paper=_SWIN_UNETR_PAPER,
        notes=(
            "URL from the bundle's large_files.yml, which publishes md5 50dd67a01b28a1d5487fd9ac27e682fb, not "
            "a SHA-256. The flat state dict is inferred from the bundle's CheckpointSaver (one object), "
            "not confirmed on the file."
        ),
    ),
    PublishedWeights(
        name="swin_bob_btcv",
        title="Swin-BOB with ETTA, BTCV (UKBOB authors)",
        source="https://drive.google.com/file/d/1mTuJ80UknqP-y3E3n5mcXUWj5Imx3Q2r/view?usp=sharing",
        licence="MIT (repository README)",
        format=_SWIN_CONTAINER,
        paper=_UKBOB_PAPER,
        notes=(
            "Google Drive page linked from the UK_BOB README: fetch by hand (Drive asks for confirmation "
            "on large files); the README's test_etta.py names it model_final.pt. Issue #3 asks whether it "
            "was pretrained on UKBOB; unanswered in what was read. No checksum published."
        ),
    ),
    PublishedWeights(
        name="swin_bob_brats",
        title="MONAI Swin UNETR, BraTS 2021, fold 0 of 5",
        source=_MONAI_RELEASE + "fold0_f48_ep300_4gpu_dice0_8854.zip",
        licence="Apache-2.0 (Project-MONAI/research-contributions; no separate licence for the weights)",
        format="zip archive holding fold0_f48_ep300_4gpu_dice0_8854/model.pt, itself " + _SWIN_CONTAINER,
        paper=_SWIN_UNETR_PAPER,
        notes=(
            "research-contributions SwinUNETR/BRATS21 README lists folds 0-4 (fold1_..._dice0_9059.zip is "
            "the best). An archive: unzip by hand and pass model.pt. No checksum published."
        ),
    ),
    PublishedWeights(
        name="swin_bob_brats",
        title="Swin-BOB with ETTA, BRATS (UKBOB authors)",
        source="https://drive.google.com/file/d/1CRhw61DgKRD22TFuT4Aqu_Urq2F1Zdmh/view?usp=sharing",
        licence="MIT (repository README)",
        format=_SWIN_CONTAINER,
        paper=_UKBOB_PAPER,
        notes="Google Drive page linked from the UK_BOB README: fetch by hand. No checksum published.",
    ),
    PublishedWeights(
        name="anatcl",
        title="AnatCL global descriptor, ResNet-18, fold 0 of 5",
        source=_ANATCL_FOLD0,
        licence=NOT_STATED,
        format=(
            "PyTorch pickle (.pth): {'model': state dict (encoder.*, head.*), 'opts': argparse.Namespace, "
            "'optimizer', 'epoch', 'run_id'}"
        ),
        download=_ANATCL_FOLD0,
        paper=(
            "Barbano, Brunello, Dufumier, Grangetto. Anatomical foundation models for brain MRIs. "
            "Pattern Recognition Letters 199 (2026), arXiv:2408.07079"
        ),
        notes=(
            "URL from WEIGHTS_URLS['anatcl-g3']['resnet18']['global'][0] in github.com/carloalbertobarbano/"
            "AnatCL (anatcl 0.0.2, the package the EIDOSLAB/AnatCL README installs); folds 1-4 and the 'local' "
            "descriptor differ only in the folder name. Earlier releases used .../resnet18-anatcl-g3/fold0.pth "
            "(kept there as 'anatcl-g3-old'). No licence file or statement found in either repository; a "
            "third-party summary says MIT, unconfirmed. No checksum published."
        ),
    ),
    PublishedWeights(
        name="brain_id",
        title="Brain-ID pretrained feature model",
        source="https://drive.google.com/drive/folders/1vuNu2dt-YdBCRW1E4gJtUsi0b_BcX6S_?usp=sharing",
        licence=NOT_STATED,
        format=(
            "PyTorch pickle (.pth): {'model': state dict (backbone.*, head.*), 'optimizer', 'epoch', "
            "'args': argparse.Namespace, 'best_val_stats'}"
        ),
        paper=(
            "Liu, Puonti, Hu, Alexander, Iglesias. Brain-ID: Learning Contrast-agnostic Anatomical "
            "Representations for Brain Imaging. ECCV 2024, arXiv:2311.16914"
        ),
        notes=(
            "Google Drive folder from the peirong26/Brain-ID README (ECCV version); fetch by hand. The README "
            "names the file brain_id_pretrained.pth, assets/download.md brainid_pretrained.pth. An earlier "
            "README linked https://drive.google.com/file/d/1Hoy243gQIWrlIuYULtd2eryk4os-cLLZ/view. No "
            "Hugging Face Hub copy and no licence file found. No checksum published."
        ),
    ),
    PublishedWeights(
        name="timm25d",
        title="timm ResNet-18 ImageNet-1k (a1_in1k), the default backbone",
        source="hf-hub:timm/resnet18.a1_in1k",
        licence="apache-2.0 (model card; timm's pretrained_cfg says the same)",
        format="safetensors file (model.safetensors): the backbone's flat state dict, classifier fc.* included",
        sha256="80c49dee3da4822c009c5a7fe591e9223c5a2cfcf95a4067ca4dfb5a7b89c612",
        download=_TIMM_RESNET18,
        paper="Wightman, Touvron, Jegou. ResNet strikes back. arXiv:2110.00476",
        notes=(
            "SHA-256 from the Hub's Git LFS details of model.safetensors (unchanged since the file was "
            "added). The Hub repository holds timm's own config.json, not this project's, so pass the "
            "file URL rather than the hf-hub id. Other backbones: timm/<model_name>.<tag> "
            "(timm.create_model(name).pretrained_cfg['hf_hub_id'])."
        ),
    ),
    PublishedWeights(
        name="segmentation_grid",
        title="no trained weights: the scan's segmentation pooled to a grid",
        source="bundled: encoders/segmentation_grid.py in the fm3d package",
        licence="Apache-2.0 (fm3d)",
        format="no weights file: computed from the segmentation and the scan at run time",
        notes="What a report model learns to read it is in its adapter.",
        bundled=True,
    ),
)


def published_weights(name: str) -> list[PublishedWeights]:
    """The rows of registry name `name` (empty when none is recorded)."""
    return [row for row in ENCODER_WEIGHTS if row.name == name]


def published_sha256(url: str) -> str | None:
    """The SHA-256 the table gives for the file at `url` (fragment ignored), or None."""
    plain = url.partition("#")[0]
    for row in ENCODER_WEIGHTS:
        if row.download == plain and row.sha256 != UNKNOWN:
            return row.sha256
    return None
