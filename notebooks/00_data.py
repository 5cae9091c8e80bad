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
params_file: str = "params/embedded.yaml"  # parameter set: its mode and data paths are used (run_all passes its own)
synth_seed: int = 0  # SynthActions seed: same seed, byte-identical annotations
synth_size: str = "default"  # "default" (the run_all size) or "small" (tests)

# %%
from cezsar import pipeline, widgets

# %% [markdown]
# Retune in JupyterLab: change a value, then re-run the cells below (under papermill the parameters above rule).

# %%
widgets.tuner(globals(), ["synth_seed", "synth_size"])

# %% [markdown]
# ## Where everything lives

# %%
layout = pipeline.layout_from(params_file, globals())
layout

# %% [markdown]
# ## Generate (or check) the data and summarise every part

# %%
summary = pipeline.prepare_data(layout, seed=synth_seed, size=synth_size)
summary
