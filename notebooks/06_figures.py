# ---
# jupyter:
#   jupytext:
#     cell_metadata_filter: tags,-all
#     formats: ipynb,py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#       jupytext_version: 1.19.6
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 06 · Figures 1 and 3, and classifying any video
# **Purpose.** Fig. 1: t-SNE of four confusable classes (dots are videos, stars are class prototypes) in the
# objects-only SBERT space and in CEZSAR's joint space. Fig. 3: confusion matrices of the hard classes, baseline vs
# CEZSAR VE + O. Last, `cezsar classify` on a real video shipped by an installed package, against a label list.
#
# **Inputs.** the τ = 0.8 checkpoint (03), test features (01). **Outputs.** `figures/fig1_tsne.png`,
# `figures/fig3_confusion.png`.

# %% tags=["parameters"]
run_name: str = "embedded"  # name of this parameter set
run_dir: str = "runs/embedded"  # executed notebooks and results.json
mode: str = "embedded"  # "embedded" or "paper"
data_root: str = "data/raw/synthactions"  # SynthActions root (embedded mode)
work_dir: str = "data/interim/embedded"  # features, triplets, checkpoints
figures_dir: str = "figures"  # tables and figures
text_model: str = "minilm"  # SBERT model (must match the checkpoint's)
tau: float = 0.8  # which trained model
alpha: float = 0.8  # Eq. 9 weight of VE
beta: float = 0.2  # Eq. 9 weight of SE(O(v))
seed: int = 0  # t-SNE seed
demo_labels: str = "a rabbit in a meadow, a car race, cooking in a kitchen, playing the piano, swimming in a pool"  # labels for the classify demo
anet_captions: str = ""  # paper mode paths (see 00_data)
anet_videos: str = ""  # paper mode
anet_features: str = ""  # paper mode
ucf101_root: str = ""  # paper mode
ucf101_features: str = ""  # paper mode
kinetics400_root: str = ""  # paper mode
kinetics400_features: str = ""  # paper mode

# %%
from cezsar import classify, pipeline, report, widgets
from cezsar.config import EvalConfig

# %%
widgets.tuner(globals(), ["alpha", "beta", "seed", "demo_labels"])

# %%
layout = pipeline.layout(mode, data_root, work_dir, run_dir, figures_dir, anet_captions, anet_videos, anet_features,
                         ucf101_root, ucf101_features, kinetics400_root, kinetics400_features)

# %% [markdown]
# ## Fig. 1 and Fig. 3 (UCF-form test set)

# %%
figs = report.figures_1_and_3(layout, layout.model_dir(tau) / "best.pt", EvalConfig(alpha=alpha, beta=beta),
                              text_model, seed=seed)
figs["hard_class_accuracy"]

# %%
figs["fig1"]

# %%
figs["fig3"]

# %% [markdown]
# ## Classify a real video against any label list (objects-only: no training needed)

# %%
classify.classify_videos([classify.packaged_video()], demo_labels, max_seconds=10)
