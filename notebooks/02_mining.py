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
# 10 s; the caption and the two object sentences most similar to it are positives; each positive gets n = 10
# negatives under the τ rule (DESIGN §7: the released code's rule, cos > 1 − τ). Train/validation split by video.
#
# **Inputs.** captions (00), object top-k (01). **Outputs.** `<work_dir>/processed/triplets_tau<τ>.npz` and its
# summary (triplets, positives short of n, similarity histogram).

# %% tags=["parameters"]
params_file: str = "params/embedded.yaml"  # parameter set: its mode and data paths are used (run_all passes its own)
text_model: str = "minilm"  # SBERT: minilm (offline, 384-d) | mpnet (768-d) | a path or hub id
tau: float = 0.8  # paper §3.4: sentences are similar when cos > 1 - tau
n_negatives: int = 10  # paper §3.4: n = 10 negatives per positive
object_positives: int = 2  # paper §3.4: object sentences per window added as positives (0 = captions only)
object_negatives: bool = True  # object sentences also serve as negatives (see MiningConfig)
seed: int = 0  # windows, negatives and the video split

# %%
from cezsar import pipeline, widgets
from cezsar.config import MiningConfig

# %%
widgets.tuner(globals(), ["tau", "n_negatives", "seed"])

# %%
layout = pipeline.layout_from(params_file, globals())

# %% [markdown]
# ## Mine the triplets

# %%
summary = pipeline.mine_triplets(layout, MiningConfig(tau=tau, n_negatives=n_negatives, object_positives=object_positives,
                                                           object_negatives=object_negatives, seed=seed), text_model)
{k: v for k, v in summary.items() if "hist" not in k}
