"""The joint embedder (paper §3.2): a VEM and a SEM into one 128-d space, trained with the triplet loss of Eq. 7
(`cezsar.training.train`).

The modules are the paper's (`cezsar.training.model`, Eqs. 1-6) unless the `ModelConfig` turns on a released switch
(`cezsar.training.released_model.embedders`, docs/fidelity.md); training's packed fast path is
`cezsar.training.packed_vem`.
"""
from __future__ import annotations

from torch import Tensor, nn

from cezsar.config import ModelConfig
from cezsar.training.packed_vem import forward_packed
from cezsar.training.released_model import embedders


class JointEmbedder(nn.Module):
    """VEM + SEM (paper §3.2): `encode_video` (Eqs. 1-5), `encode_video_packed` (the same on packed rows) and
    `encode_text` (Eq. 6), with their inputs' shapes checked."""

    def __init__(self, cfg: ModelConfig | None = None) -> None:
        super().__init__()
        self.cfg = cfg or ModelConfig()
        self.vem, self.sem = embedders(self.cfg)  # the VEM first: parameter names and init order as ever

    def encode_video(self, x: Tensor, mask: Tensor | None = None) -> Tensor:
        """Eqs. 1-5. x: (B, T, feat_dim) float; mask: (B, T) bool, True = valid. Returns (B, d_emb)."""
        if x.dim() != 3 or x.shape[-1] != self.cfg.feat_dim:
            raise ValueError(f"encode_video expects (B, T, {self.cfg.feat_dim}) features, got {tuple(x.shape)}")
        if mask is not None and mask.shape != x.shape[:2]:
            raise ValueError(f"mask shape {tuple(mask.shape)} does not match features {tuple(x.shape[:2])}")
        return self.vem(x, mask)

    def encode_video_packed(self, x: Tensor, mask: Tensor, index: Tensor | None = None) -> Tensor:
        """Eqs. 1-5 on packed input (`cezsar.training.packed_vem.forward_packed`): x (N, feat_dim) = the valid rows of a
        (U, T) batch, mask (U, T) bool, index (N,) optional flat positions. Returns (U, d_emb)."""
        if x.dim() != 2 or x.shape[-1] != self.cfg.feat_dim:
            raise ValueError(f"encode_video_packed expects (N, {self.cfg.feat_dim}) rows, got {tuple(x.shape)}")
        if mask.dim() != 2 or (index is not None and index.shape != x.shape[:1]):
            raise ValueError(f"mask {tuple(mask.shape)} / index must be (U, T) / ({x.shape[0]},)")
        return forward_packed(self.vem, x, mask, index)

    def encode_text(self, s: Tensor) -> Tensor:
        """Eq. 6. s: (B, text_dim) SBERT vectors. Returns (B, d_emb)."""
        if s.dim() != 2 or s.shape[-1] != self.cfg.text_dim:
            raise ValueError(f"encode_text expects (B, {self.cfg.text_dim}) sentence vectors, got {tuple(s.shape)}")
        return self.sem(s)
