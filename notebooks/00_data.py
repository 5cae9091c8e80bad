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
# **Purpose.** Make the inputs of the pipeline ready. Embedded mode generates **SynthActions**: an
# ActivityNet-Captions-form training corpus of untrimmed videos with captioned segments, UCF-101-form and
# Kinetics-400-form test sets of unseen classes, and their class descriptions. Paper mode (real data) checks every
# input first — captions, training features or videos, test sets, class descriptions, backbone weights, the text
# model — and stops with one message listing everything missing, which stage needs it and where to get it.
#
# **Inputs.** a parameter set `params/*.yaml` (every value of the run). **Outputs.** `data/raw/synthactions/`
# (embedded), a summary of every dataset part, and a few frames of a few clips with their captions.

# %% tags=["parameters"]
# None: the parameter set's value (params_file); any value written here overrides it for this notebook
params_file: str = "params/embedded.yaml"  # the parameter set of this run (run_all passes its own)
synth_seed: int | None = None  # SynthActions seed: same seed, byte-identical annotations
synth_size: str | None = None  # "default" (the run_all size) or "small" (tests)

# %%
from cezsar.harness import digests, pipeline, previews, widgets

# %% [markdown]
# Retune in JupyterLab: a value set on a control is used by the next Run All of this notebook (and only in
# JupyterLab; under papermill the parameter set rules) until you press reset. The table below lists every value
# that differs from the parameter set.

# %%
widgets.tuner(globals(), ["synth_seed", "synth_size"], params_file)

# %%
P = pipeline.settings(params_file, globals())
P

# %% [markdown]
# ## Where everything lives

# %%
layout = pipeline.layout_from(P)
pipeline.describe(layout)

# %% [markdown]
# ## Generate (or check) the data and summarise every part

# %%
summary = pipeline.prepare_data(layout, P)
summary

# %% [markdown]
# ## This machine and these data against the committed run
# The environment that runs this set (Python, packages, CPU, BLAS, threads, device, lock file) beside the one that
# made the committed figures (or, where this machine's training kernels have a reference run of their own, such as
# an AVX2-only CPU, beside that one), and whether the generated data are byte-identical to theirs. The report of
# `./run_all.sh` ends with the full verdict of `cezsar verify` over every stage (README, "A locked environment").

# %%
digests.early_check(layout, P)

# %% [markdown]
# ## A look at the data: frames of a few training clips with their captions, and the test classes

# %%
previews.data_preview(layout)
