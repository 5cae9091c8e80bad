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
# # 02 · Hard negative mining
# **Purpose.** Build the training triplets (paper §3.4): for each captioned segment, three random windows of up to
# 10 s; the caption and the object sentences most similar to it are positives; each positive gets n = 10
# negatives under the τ rule (the released code's rule, cos > 1 − τ; see docs/fidelity.md). Train/validation split
# by video. A triplet file is reused only when its settings and every input (captions, text model, features,
# objects) are the same.
#
# **Inputs.** captions (00), features and object top-k (01). **Outputs.** `<processed_dir>/triplets_tau<τ>.npz`,
# its summary and the similarity histograms with the τ threshold.

# %% tags=["parameters"]
# None: the parameter set's value (params_file); any value written here overrides it for this notebook
params_file: str = "params/embedded.yaml"  # the parameter set of this run (run_all passes its own)
text_model: str | None = None  # SBERT: minilm (offline, 384-d) | mpnet (768-d) | a path or hub id
tau: float | None = None  # paper §3.4: sentences are similar when cos > 1 - tau
n_negatives: int | None = None  # paper §3.4: n = 10 negatives per positive
object_positives: int | None = None  # paper §3.4: 2 object sentences per window as positives (embedded set: 0, captions only)
object_negatives: bool | None = None  # object sentences also serve as negatives (see MiningConfig)
seed: int | None = None  # windows, negatives and the video split

# %%
from cezsar.harness import pipeline, pipeline_mining, previews, widgets

# %%
widgets.tuner(globals(), ["tau", "n_negatives", "seed"], params_file)

# %%
P = pipeline.settings(params_file, globals())
P

# %%
layout = pipeline.layout_from(P)

# %% [markdown]
# ## Mine the triplets

# %%
summary = pipeline_mining.mine_triplets(layout, P)
{k: v for k, v in summary.items() if "hist" not in k}

# %% [markdown]
# ## Similarity of positives to their negatives, against the τ threshold

# %%
previews.mining_histograms(summary, P.tau)
