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
# # 00 · Data
# **Purpose.** Make the inputs of the pipeline ready. Embedded mode generates **SynthActions** (DESIGN §6): an
# ActivityNet-Captions-form training corpus of untrimmed videos with captioned segments, UCF-101-form and
# Kinetics-400-form test sets of unseen classes, and their class descriptions. Paper mode checks every real input
# first and stops with one message listing what is missing and where to get it.
#
# **Inputs.** `params/*.yaml` (mode, paths). **Outputs.** `data/raw/synthactions/` (embedded) and a summary of
# every dataset part (videos, segments, classes, annotation problems).

# %% tags=["parameters"]
run_name: str = "embedded"  # name of this parameter set (runs/<run_name>/)
run_dir: str = "runs/embedded"  # where run_all.sh writes executed notebooks and results.json
mode: str = "embedded"  # "embedded" = SynthActions on CPU; "paper" = the real datasets
data_root: str = "data/raw/synthactions"  # SynthActions root (embedded mode)
work_dir: str = "data/interim/embedded"  # features, triplets, checkpoints of this parameter set
figures_dir: str = "figures"  # tables and figures
synth_seed: int = 0  # SynthActions seed: same seed, byte-identical annotations
synth_size: str = "default"  # "default" (the run_all size) or "small" (tests)
anet_captions: str = ""  # paper mode: ActivityNet Captions train.json
anet_videos: str = ""  # paper mode: raw ActivityNet videos (empty when released features are used)
anet_features: str = ""  # paper mode: released features folder (<video_id>.npy)
ucf101_root: str = ""  # paper mode: UCF-101 root (classInd.txt, testlist01.txt, videos)
ucf101_features: str = ""  # paper mode: UCF-101 features folder (empty = extract here)
kinetics400_root: str = ""  # paper mode: Kinetics-400 root (test.csv, clips/)
kinetics400_features: str = ""  # paper mode: Kinetics-400 features folder (empty = extract here)

# %%
from cezsar import pipeline, widgets

# %% [markdown]
# Retune in JupyterLab: change a value, then re-run the cells below (under papermill the parameters above rule).

# %%
widgets.tuner(globals(), ["synth_seed", "synth_size"])

# %% [markdown]
# ## Where everything lives

# %%
layout = pipeline.layout(mode, data_root, work_dir, run_dir, figures_dir, anet_captions, anet_videos, anet_features,
                         ucf101_root, ucf101_features, kinetics400_root, kinetics400_features)
layout

# %% [markdown]
# ## Generate (or check) the data and summarise every part

# %%
summary = pipeline.prepare_data(layout, seed=synth_seed, size=synth_size)
summary
