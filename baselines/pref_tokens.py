"""``preference-tokens``: users as mixtures of a few learnable group prototypes.

The idea of "Learning User Preferences for Image Generation Model" (arXiv 2508.08220: a small
set of learnable preference tokens shared across users, read against the user's liked and
disliked references, trained with a contrastive preference loss), written from its
description on image embeddings instead of a multimodal LLM. With z = P e (learned
projection, width ``hidden``) and M tokens T_1..T_M (default 10):

    m_u  = mean_j y_j z_j                        (y_j = +1 liked, -1 disliked history item)
    pi_u = softmax_m(<A m_u, T_m> / sqrt(hidden))   (the user's mixture over the tokens)
    s(u, c) = <w, e_c> + <sum_m pi_um T_m, z_c>

The mixture is inferred from the history, so a held-out user is served from their k few-shot
pairs; with k = 0, m_u = 0 and pi_u is uniform (the population's average token). Loss:
contrastive (InfoNCE, temperature tau) — each liked item of a user against every disliked item
of the same user in the mini-batch,

    L = -log exp(s(u, l_p)/tau) / (exp(s(u, l_p)/tau) + sum_q exp(s(u, d_q)/tau)),

which reduces to Bradley–Terry with a single pair. Ties carry no direction and are skipped.
Training pairs are scored with their own items left out of m_u; early stopping on the
validation Bradley–Terry loss (baselines._pref_torch), never before ``min_epochs`` (the
mixture sits on a plateau until the tokens break symmetry). On the valid pairs of
synthetic-small (k = all, plain accuracy): weight decay 0 / 1e-4: 0.754, 1e-3: 0.569; hidden
16: 0.756, 32: 0.754, 64: 0.754.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from baselines._pref_torch import TorchPreferenceModel, _user_rows
from benchmark.tracks.preference.track import DEFAULT_ENCODER


class PreferenceTokens(TorchPreferenceModel):
    name = "preference-tokens"
    loss = "contrastive"

    def __init__(self, n_tokens: int = 10, hidden: int = 32, temperature: float = 1.0,
                 max_history: int = 64, valid_ratio: float = 0.1, max_epochs: int = 40,
                 min_epochs: int = 20,
                 patience: int = 8, lr: float = 1e-2, weight_decay: float = 1e-4,
                 batch_pairs: int = 256, encoder: str = DEFAULT_ENCODER, seed: int = 0,
                 threads: int = 1,
                 progress: bool = True) -> None:
        self.n_tokens = n_tokens
        self.hidden = hidden
        self.temperature = temperature
        self.max_history = max_history
        self.valid_ratio = valid_ratio
        self.max_epochs = max_epochs
        self.min_epochs = min_epochs
        self.patience = patience
        self.lr = lr
        self.weight_decay = weight_decay
        self.batch_pairs = batch_pairs
        self.encoder = encoder
        self.seed = seed
        self.threads = threads
        self.progress = progress

    def _build(self, dim: int) -> Any:
        import torch
        from torch import nn

        if self.n_tokens < 1:
            raise ValueError(f"n_tokens must be >= 1, got {self.n_tokens}")
        h, m = self.hidden, self.n_tokens

        class Net(nn.Module):
            def __init__(self) -> None:
                super().__init__()
                self.head = nn.Linear(dim, 1, bias=False)
                nn.init.zeros_(self.head.weight)
                self.proj = nn.Linear(dim, h)
                self.affinity = nn.Linear(h, h, bias=False)
                self.tokens = nn.Parameter(torch.randn(m, h) / math.sqrt(h))

        return Net()

    def _mixture_logits(self, hist_e: Any, hist_liked: Any, hist_mask: Any,
                        cand_slot: Any) -> Any:
        import torch

        net = self.net_
        if hist_e.shape[1] == 0:
            return torch.zeros((len(cand_slot), self.n_tokens))
        sign = hist_liked.float() * 2.0 - 1.0
        contrib = net.proj(hist_e) * sign[..., None]  # [U, H, h]
        w = hist_mask.float()
        mean = torch.einsum("ck,ckh->ch", w, contrib[cand_slot]) / w.sum(1, keepdim=True)\
            .clamp_min(1.0)
        return net.affinity(mean) @ net.tokens.T / math.sqrt(self.hidden)

    def _utility(self, hist_e: Any, hist_liked: Any, hist_mask: Any, cand_slot: Any,
                 cand_e: Any) -> Any:
        import torch

        net = self.net_
        pi = torch.softmax(self._mixture_logits(hist_e, hist_liked, hist_mask, cand_slot), 1)
        pref = pi @ net.tokens
        return net.head(cand_e).squeeze(-1) + (pref * net.proj(cand_e)).sum(1)

    def mixture(self, user_ids: np.ndarray) -> np.ndarray:
        """Each user's mixture weights over the tokens, float32 [n_users, n_tokens] (uniform
        for a user with no judgements) — which group prototypes explain the user."""
        import torch

        users = np.asarray(user_ids, dtype=object).astype(str)
        rows = self.hist_.users.get_indexer(users)
        slots, slot = np.unique(rows, return_inverse=True)
        items, liked, _ = _user_rows(self.hist_, slots)
        valid = (items >= 0) & (slots >= 0)[:, None]
        with torch.no_grad():
            logits = self._mixture_logits(
                self.table_[torch.from_numpy(np.maximum(items, 0))],
                torch.from_numpy(liked), torch.from_numpy(valid[slot]),
                torch.from_numpy(slot))
            return torch.softmax(logits, 1).numpy().astype(np.float32)
