"""The paper's figures, one function each; every function returns a matplotlib Figure (the notebook saves it).

Fig. 1: t-SNE of a few confusable classes, videos as dots and class prototypes as stars, in the baseline
(SBERT) space beside the learned joint space. Fig. 3: confusion matrices of the hard classes, baseline vs
CEZSAR. Plus the τ-ablation plot of paper §5.
"""
from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.figure import Figure

# No backend is forced here: in a notebook (JupyterLab, papermill) the inline backend shows every returned
# figure in the cell's output; without a display matplotlib falls back to Agg by itself.


def shown_once(fig: Figure) -> Figure:
    """Detach `fig` from pyplot, so a notebook shows it once (as the cell's value), not again at cell end."""
    plt.close(fig)
    return fig


def _tsne_2d(videos: np.ndarray, protos: np.ndarray, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Joint 2-d t-SNE of videos (V, d) and prototypes (C, d) under cosine distance."""
    from sklearn.manifold import TSNE  # lazy: scikit-learn takes ~1 s to import; only the t-SNE figure needs it

    x = np.concatenate([videos, protos]).astype(np.float64)  # (V + C, d)
    x /= np.linalg.norm(x, axis=1, keepdims=True) + 1e-12  # the classifier is cosine 1-NN (Eq. 8)
    perplexity = float(max(2.0, min(30.0, (len(x) - 1) / 3)))
    y = TSNE(n_components=2, perplexity=perplexity, init="pca", random_state=seed, metric="cosine").fit_transform(x)
    return y[: len(videos)], y[len(videos):]  # (V, 2), (C, 2)


def fig1_tsne(spaces: dict[str, tuple[np.ndarray, np.ndarray]], labels: np.ndarray, class_names: list[str],
              seed: int = 0) -> Figure:
    """Fig. 1: one panel per embedding space.

    Args:
        spaces: panel title -> (video embeddings (V, d), prototype embeddings (C, d)), e.g.
            {"(a) SBERT space (objects-only baseline)": ..., "(b) CEZSAR joint space": ...}.
        labels: (V,) class index of every video into `class_names`.
        class_names: the C classes shown (four confusable ones in the paper).
    """
    fig, axes = plt.subplots(1, len(spaces), figsize=(5.2 * len(spaces), 4.8), squeeze=False)
    colors = plt.get_cmap("tab10")(np.arange(len(class_names)) % 10)
    for ax, (title, (vids, protos)) in zip(axes[0], spaces.items()):
        v2, p2 = _tsne_2d(vids, protos, seed)
        for c, name in enumerate(class_names):
            pts = v2[labels == c]
            ax.scatter(pts[:, 0], pts[:, 1], s=14, color=colors[c], alpha=0.75, label=name)
            ax.scatter(p2[c, 0], p2[c, 1], s=320, marker="*", color=colors[c], edgecolor="black", linewidth=1.2)
        ax.set_title(title, fontsize=10)
        ax.set_xticks([])
        ax.set_yticks([])
    axes[0][0].legend(fontsize=8, loc="best", markerscale=1.2)
    fig.suptitle("t-SNE of confusable classes: dots are videos, stars are class prototypes", fontsize=10)
    fig.tight_layout()
    return shown_once(fig)


def fig3_confusion(matrices: dict[str, np.ndarray], class_names: list[str]) -> Figure:
    """Fig. 3: confusion matrices (rows = true class, columns = predicted), one panel per method.

    Args:
        matrices: panel title (with its accuracy) -> (C, C) integer counts over the hard classes.
    """
    import seaborn as sns  # lazy: as scikit-learn above, for the confusion matrices only

    n = len(class_names)
    fig, axes = plt.subplots(1, len(matrices), figsize=(0.55 * n * len(matrices) + 3, 0.5 * n + 2.4),
                             squeeze=False)
    for ax, (title, cm) in zip(axes[0], matrices.items()):
        sns.heatmap(cm, annot=True, fmt="d", cmap="Blues", cbar=False, square=True, ax=ax,
                    xticklabels=class_names, yticklabels=class_names, annot_kws={"fontsize": 7})
        ax.set_title(title, fontsize=10)
        ax.set_xlabel("predicted")
        ax.set_ylabel("true")
        ax.tick_params(axis="x", labelrotation=60, labelsize=7)
        ax.tick_params(axis="y", labelrotation=0, labelsize=7)
    fig.tight_layout()
    return shown_once(fig)


def tau_ablation(taus: list[float], accuracies: list[float], paper: dict[float, float] | None = None,
                 dataset: str = "", spread: list[float] | None = None) -> Figure:
    """Top-1 accuracy (%) against the mining threshold τ (paper §5: 0.7, 0.8, 0.9 on UCF-101 0/101); `spread`:
    the std over training seeds of each accuracy, drawn as error bars."""
    fig, ax = plt.subplots(figsize=(5.6, 4.0))
    label = f"computed here{f' ({dataset})' if dataset else ''}"
    if spread is not None and any(spread):
        ax.errorbar(taus, [100 * a for a in accuracies], yerr=[100 * e for e in spread], fmt="o-", capsize=3,
                    label=label + ", ± std over seeds")
    else:
        ax.plot(taus, [100 * a for a in accuracies], "o-", label=label)
    if paper:
        ax.plot(list(paper), list(paper.values()), "s--", color="gray", label="paper (UCF-101, VE + O)")
    ax.set_xlabel("τ (negatives: cos > 1 − τ)")
    ax.set_ylabel("top-1 accuracy (%)")
    ax.set_xticks(taus)
    ax.grid(alpha=0.3)
    # below the axes: the long labels (dataset, seeds) would cover the error bars inside them
    ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.2), frameon=False)
    fig.tight_layout()
    return shown_once(fig)


# Paper §5: UCF-101 0/101 with Eq. 9; τ = 0.8 is Table 1's VE + O row.
PAPER_TAU = {0.7: 47.8, 0.8: 50.9, 0.9: 48.3}


def loss_curves(history: list[dict] | dict[int, list[dict]]) -> Figure:
    """Training and validation triplet loss (Eq. 7) per epoch, from `train.fit`'s history, or from several
    training seeds' histories ({seed: history}, one pair of curves each)."""
    fig, ax = plt.subplots(figsize=(4.6, 3.2))
    runs = history if isinstance(history, dict) else {None: history}
    for i, (seed, hist) in enumerate(runs.items()):
        ep = [h["epoch"] + 1 for h in hist]
        tag = "" if seed is None else f", seed {seed}"
        ax.plot(ep, [h["train_loss"] for h in hist], "o-", color=f"C{2 * i}", label="train" + tag, ms=3)
        if any(h.get("val_loss") is not None for h in hist):
            ax.plot(ep, [h["val_loss"] for h in hist], "s--", color=f"C{2 * i + 1}",
                    label="validation (held-out videos)" + tag, ms=3)
    ax.set_xlabel("epoch")
    ax.set_ylabel("triplet loss (Eq. 7)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return shown_once(fig)


def similarity_histograms(pairs: dict, negatives: dict, tau: float) -> Figure:
    """Mining (paper §3.4): cosine of positive–candidate pairs and of the drawn negatives, with the τ rule's
    threshold cos = 1 − τ (negatives lie above it under the released rule)."""
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.2))
    for ax, (title, h) in zip(axes, (("positive–candidate pairs", pairs), ("drawn negatives", negatives))):
        edges = np.asarray(h["edges"], np.float64)
        counts = np.asarray(h["counts"], np.float64)
        ax.bar(edges[:-1], counts, width=np.diff(edges), align="edge", color="#4c72b0", edgecolor="white")
        ax.axvline(1 - tau, color="#c44e52", ls="--", label=f"1 − τ = {1 - tau:.1f}")
        ax.set_title(title, fontsize=10)
        ax.set_xlabel("cosine similarity (SBERT)")
        ax.legend(fontsize=8)
    axes[0].set_ylabel("count")
    fig.tight_layout()
    return shown_once(fig)


def frames_with_captions(rows: list[tuple[str, list[np.ndarray], str]], starts: list[int] | None = None) -> Figure:
    """A few frames of a few clips, one clip per row, its caption written above the row; `starts` gives the
    second of each row's first frame (0 by default)."""
    n = max(len(frames) for _, frames, _ in rows)
    h, w = rows[0][1][0].shape[:2]
    cell = 1.9  # inches per frame
    fig, axes = plt.subplots(len(rows), n, figsize=(cell * n, (cell * h / w + 0.45) * len(rows)), squeeze=False)
    for r, (video_id, frames, caption) in enumerate(rows):
        for c in range(n):
            ax = axes[r, c]
            ax.set_xticks([])
            ax.set_yticks([])
            if c < len(frames):
                ax.imshow(frames[c])
                ax.set_xlabel(f"{c + (starts[r] if starts else 0)} s", fontsize=7, labelpad=1)
            else:
                ax.axis("off")
        text = axes[r, 0].text(0, 1.06, f"{video_id}: {caption}"[:140], transform=axes[r, 0].transAxes, fontsize=8,
                               va="bottom", ha="left")
        text.set_in_layout(False)  # a long caption may run over the row; it must not shrink the frames
    fig.tight_layout(h_pad=1.8, w_pad=0.3)
    return shown_once(fig)


def objects_strip(names: list[str], probs: np.ndarray, title: str) -> Figure:
    """Per-second objects of one clip: rows are the clip's most frequent classes, columns its seconds,
    colour the softmax probability (0 where a class is outside that second's top-k)."""
    fig, ax = plt.subplots(figsize=(min(12, 1.2 + 0.45 * probs.shape[1]), 0.9 + 0.32 * len(names)))
    im = ax.imshow(probs, aspect="auto", cmap="viridis", vmin=0, vmax=max(float(probs.max()), 1e-6))
    ax.set_yticks(range(len(names)), names, fontsize=8)
    ax.set_xlabel("second")
    ax.set_title(title, fontsize=9)
    fig.colorbar(im, ax=ax, fraction=0.03, label="probability")
    fig.tight_layout()
    return shown_once(fig)
