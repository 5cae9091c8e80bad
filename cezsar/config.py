"""Paths and typed configs with the paper's defaults (one place, cookiecutter-data-science style).

Every default cites where it comes from: the paper (section / equation), the released code, or
docs/fidelity.md when the two disagree and we chose. Each released-code behaviour is a switch, off by default
(the paper's reading); `params/released.yaml` turns them all on.
"""
from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from pathlib import Path

# --- paths -------------------------------------------------------------------------------------
# The tracked data folders and the runs folder. Every other path (raw data, interim work, figures) belongs to a
# parameter set (params/*.yaml, resolved by cezsar.harness.params against PROJ_ROOT).
PROJ_ROOT = Path(__file__).resolve().parents[1]
DATA_DIR = PROJ_ROOT / "data"
CLASSES_DIR = DATA_DIR / "classes"  # tracked: official class lists
DESCRIPTIONS_DIR = DATA_DIR / "descriptions"  # tracked: our class descriptions
SPLITS_DIR = DATA_DIR / "splits"  # tracked: the class subsets of every protocol run
RUNS_DIR = PROJ_ROOT / "runs"  # executed notebooks and results.json per parameter set (CEZSAR_RUNS_DIR overrides)


def cache_dir() -> Path:
    """The package-owned cache for offline resources (models, WordNet) and the sentence cache.

    `CEZSAR_CACHE` overrides; otherwise `$XDG_CACHE_HOME/cezsar` or `~/.cache/cezsar`.
    """
    env = os.environ.get("CEZSAR_CACHE")
    if env:
        return Path(env).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "cezsar"


# --- stage configs -----------------------------------------------------------------------------
@dataclass
class ExtractConfig:
    backbone: str = "efficientnet_lite0"  # docs/fidelity.md "frame CNN": BiT-M-R152x2 when its .npz is given, else EfficientNet-Lite0
    weights: str | None = None  # path to BiT .npz / ResNet-152 .pth; None = the offline default
    fps: float = 1.0  # paper §3.2: one frame per second
    image_size: int = 160  # EfficientNet input side; 160 px is ~3x faster than 224 on 2 cores
    batch: int = 32  # frames per CNN forward
    topk_objects: int = 5  # per-second object classes kept (indices + scores) for mining and Eq. 9
    max_seconds: float | None = None  # decode at most this many seconds (None = whole video)
    decoders: int = 0  # videos decoded at once beside the CNN; 0 = auto: 1 on a CPU (the CNN needs the cores), cores - 2 on a GPU
    released_preprocess: bool = False  # paper: –; here RGB, whole frame resized; released: BGR, resize 256 + centre crop 224
    released_sampling: bool = False  # paper §3.2 1 fps; here the frame at each whole second; released: the frames
    # of a 25-fps re-encode at linspace(0, n-1, n//25) (cezsar.encoders.video.decode_released)


@dataclass
class TextConfig:
    model: str = "minilm"  # all-MiniLM-L6-v2 offline (docs/real_data.md); "mpnet" (768-d) or a path; paper: paraphrase-distilroberta-base-v2
    batch: int = 64  # sentences per SBERT forward


@dataclass
class MiningConfig:
    tau: float = 0.8  # paper §3.4 footnote 7: similar if cos > 1 - tau
    n_negatives: int = 10  # paper §3.4 footnote 8: n = 10
    windows_per_segment: int = 3  # paper §3.4: three random windows per segment
    window_seconds: float = 10.0  # paper §3.4: windows of up to 10 s
    # paper §3.4: the two object sentences most similar to the caption (params/paper.yaml: 2); the default is the
    # embedded parameter set's 0, captions only (docs/decisions.md §15): params/embedded.yaml is the one source
    object_positives: int = 0
    objects_per_window: int = 5  # released code: top-5 objects over the window are the candidates
    object_negatives: bool = True  # object sentences join the negative pool too: if they were only ever
    # positives, a sentence's kind would reveal its role and the model can learn that instead of the video
    # (measured on SynthActions: VE collapsed to chance with captions-only negatives; docs/decisions.md §15)
    rule: str = "released"  # docs/fidelity.md: "released" = negatives have cos > 1 - tau (hard, related)
    exclude_same_video: bool = False  # switch: never draw a negative from the anchor's own video
    max_sim: float | None = None  # switch: paraphrase guard, drop candidates with cos >= max_sim
    val_fraction: float = 0.1  # share of *videos* (or of triplets, split="triplet") held out for early stopping
    split: str = "video"  # paper: –; here by video; "triplet" = released: triplets drawn at random (leaky; 0.3 there)
    draw: str = "uniform"  # paper n = 10; here distinct, uniform; "released": with replacement, positives' entries
    released_objects: bool = False  # paper: 2 object sentences; released: all-sense fragments split on ".", > 5
    # words, cut to 20, top-5 objects by mean score over 10 s from a random whole second (released_starts)
    far_from_all: bool = False  # paper §3.4 words: the rule for its positive, far from the window's other positives
    object_tau: bool = False  # paper §3.4 words: object positives must themselves be similar (cos > 1 - tau)
    block: int = 4096  # rows of the similarity matrix computed at once (bounds memory)
    seed: int = 0


@dataclass
class ModelConfig:
    feat_dim: int = 1280  # CNN feature size: 1280 EfficientNet-Lite0, 4096 BiT-M-R152x2 (paper §3.2 d_c)
    text_dim: int = 384  # SBERT size: 384 MiniLM, 768 paper SBERT (Eq. 6)
    d_model: int = 512  # paper §4: transformer d_model
    n_heads: int = 2  # paper §4: heads
    n_layers: int = 1  # paper §4: layers
    emb_dim: int = 128  # paper §3.2 footnote 6: d_emb = 128
    max_len: int = 15  # paper §4: stacks of up to 15 features
    dropout: float = 0.1  # torch's TransformerEncoderLayer default (the paper does not say)
    positional: bool = True  # paper Eq. 3 input: sinusoidal PE; released code has none
    released_sem: bool = False  # released SEM: Dropout + Linear + LayerNorm instead of FC+ReLU (Eq. 6)
    released_padding: bool = False  # paper: up to 15 rows, padding masked; released: always max_len (16) rows,
    # zero padded, the padding inside attention and the mean
    released_attention: bool = False  # paper: over time within a clip; released: across the batch in training
    # (batch_first unset), none across time at test (each step attends to itself)
    released_head: bool = False  # paper Eqs. 1, 5: FC+ReLU; released: ReLU -> FC -> Dropout -> transformer ->
    # Dropout -> ReLU -> mean -> FC, no output ReLU, an affine LayerNorm on the VEM and SEM outputs in training only
    xavier_init: bool = False  # paper: –; here torch's default init; released: Xavier-normal weights (p.dim() > 1)


@dataclass
class TrainConfig:
    lr: float = 1e-4  # paper §4
    betas: tuple[float, float] = (0.9, 0.99)  # paper §4
    weight_decay: float = 1e-5  # paper §4
    batch: int = 128  # paper §4
    epochs: int = 16  # paper §4: 25 (params/paper.yaml); the default is params/embedded.yaml's, the one source
    patience: int = 10  # paper §4: early stopping
    margin: float = 1.0  # Eq. 7 epsilon; released code: 1.0
    window: str = "paper"  # "paper": the mined window is the visual input; "released": first 16 s of the segment
    autocast: bool = True  # paper: –; here bf16 autocast on CUDA; released: fp32 everywhere (False)
    # paper §4 / released DataLoader: "iid" mini-batches (params/paper.yaml, released.yaml); "grouped": triplets of
    # one window travel in chunks of FastPathConfig.group (~16 windows x 8 per batch of 128), ~6x fewer rows per
    # step on CPU. The default is the embedded parameter set's, grouped (docs/fidelity.md "batch makeup")
    batch_makeup: str = "grouped"
    released_validation: bool = False  # paper: –; here the validation loss in eval mode; released: in train mode
    # (the released loop never called model.eval(): dropout on, the training-only LayerNorms applied)
    seed: int = 0
    device: str = "auto"  # auto = CUDA when present (bf16 autocast there), else CPU


@dataclass
class FastPathConfig:
    """Knobs of the fast data path (not in the paper; they change speed, and `group` the batch mix of
    `TrainConfig.batch_makeup="grouped"`)."""

    # with batch_makeup "grouped": triplets of one window kept together in a batch, 0 = all of them (fastest),
    # 1 = an i.i.d. shuffle. 8 (16 windows per batch of 128): on SynthActions ~4x the i.i.d. speed on CPU with
    # nearly its per-epoch validation loss, while 0 needs several times more epochs (benchmarks/RESULTS.md)
    group: int = 8
    bank_dtype: str = "float16"  # storage of the contiguous feature array: float16 halves memory, float32 exact
    cache_dir: str | None = None  # where the bank .npy lives; None = <out>/cache
    # the training step (docs/decisions.md §16): "static" = fixed shapes, batches padded to `batch` with weight-0
    # triplets, distinct windows/sentences found once per epoch (`cezsar.training.static_step`); "eager" = per-batch
    # torch.unique. Same loss and gradients; the released padded variants and torchrun use "eager"
    step: str = "static"
    graph: bool = False  # CUDA only, step "static": the whole step (forward, backward, AdamW) in CUDA graphs
    unroll: int = 8  # graph: training steps captured in one graph
    tf32: bool = False  # CUDA only: fp32 weights and activations with TF32 GEMMs instead of bf16 autocast
    # the bank's dtype on a GPU: "auto" = bfloat16 for the static step under bf16 autocast (gathered straight
    # into the compute dtype, the same numbers), else as stored; "stored"; "bfloat16"
    device_bank: str = "auto"
    background: str = "auto"  # epoch order one epoch ahead and checkpoint writes on a thread: "on", "off",
    # "auto" = on with CUDA (on a CPU they would compete with the step for the same cores)


@dataclass
class EvalConfig:
    alpha: float = 0.8  # Eq. 9, paper §5
    beta: float = 0.2  # Eq. 9; 0 = VE only
    n_objects: int = 3  # docs/fidelity.md: top-3 objects per video for O(v)
    normalize_terms: bool = True  # docs/fidelity.md: L2-normalise VE and SE(O) before the sum; False = released
    runs: int = 50  # paper §4: 50 random class subsets
    max_seconds: float | None = None  # released code: first 16 s; None = whole clip
    released_objects: bool = False  # O(v), here: top-3 by summed score over the clip, one sentence each, exact
    # synset; released: mean score over the first 16 rows (padding included), top-3, one joined all-sense text
    released_descriptions: bool = False  # here: the first description sentence as given; released: lower-cased,
    # contractions expanded, only letters and . , ! ? kept, the sentence most similar to the class name
    std_ddof: int = 1  # std over runs: sample std (ddof 1) here; the released code's numpy default is ddof 0


def to_dict(cfg) -> dict:
    """A config as a plain dict (for checkpoints and results JSON)."""
    return asdict(cfg)
