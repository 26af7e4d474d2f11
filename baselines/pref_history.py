"""``history-attention``: a user is the attention-weighted read-out of their own judgements.

No per-user parameters: the user is encoded from the embeddings of the items they liked and
disliked (from the pairs given to ``fit``, which for a held-out user are their k few-shot
pairs), so the same weights serve seen and new users. With z = P e (a learned projection of
the image embedding, width ``hidden``), for candidate image c and history items j:

    q = W_q z_c,   k_j = W_k z_j + s_k[y_j],   v_j = (W_v z_j) * g[y_j] + s_v[y_j]
    a_j = softmax_j(<q, k_j> / sqrt(hidden))     (over the user's history)
    s(u, c) = <w, e_c> + <W_o sum_j a_j v_j, z_c>

y_j in {liked, disliked} indexes the learned sign embeddings (s_k, s_v and the gate g,
initialised to +1 for liked and -1 for disliked). With no history (k = 0, an unknown user)
the read-out is 0 and the score is the global head <w, e_c>. Trained with the Bradley–Terry
loss on ``d = s(u, a) - s(u, b)``, each training pair scored with its own items masked out of
the history; early stopping on the validation BT loss of a seeded per-user share of the pairs
(see baselines._pref_torch).

Defaults were chosen on the valid pairs of synthetic-small (k = all, plain accuracy):
weight decay 0: 0.797, 1e-4: 0.790, 1e-3: 0.696, 1e-2: 0.547; hidden 16: 0.781, 32: 0.790;
the model overfits after 6-12 epochs, which early stopping catches.
"""

from __future__ import annotations

import math
from typing import Any

from baselines._pref_torch import TorchPreferenceModel
from benchmark.tracks.preference.track import DEFAULT_ENCODER


class HistoryAttention(TorchPreferenceModel):
    name = "history-attention"
    loss = "bt"

    def __init__(self, hidden: int = 32, max_history: int = 64, valid_ratio: float = 0.1,
                 max_epochs: int = 40, min_epochs: int = 10, patience: int = 4,
                 lr: float = 3e-3,
                 weight_decay: float = 0.0, batch_pairs: int = 256,
                 encoder: str = DEFAULT_ENCODER, seed: int = 0, threads: int = 1,
                 progress: bool = True) -> None:
        self.hidden = hidden
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

        h = self.hidden

        class Net(nn.Module):
            def __init__(self) -> None:
                super().__init__()
                self.head = nn.Linear(dim, 1, bias=False)
                nn.init.zeros_(self.head.weight)
                self.proj = nn.Linear(dim, h)
                self.query = nn.Linear(h, h, bias=False)
                self.key = nn.Linear(h, h, bias=False)
                self.value = nn.Linear(h, h, bias=False)
                self.out = nn.Linear(h, h, bias=False)
                self.key_sign = nn.Embedding(2, h)  # row 0 disliked, row 1 liked
                self.value_sign = nn.Embedding(2, h)
                self.value_gate = nn.Embedding(2, h)
                nn.init.normal_(self.key_sign.weight, std=0.1)
                nn.init.normal_(self.value_sign.weight, std=0.01)
                with torch.no_grad():
                    self.value_gate.weight[0].fill_(-1.0)
                    self.value_gate.weight[1].fill_(1.0)

        return Net()

    def _utility(self, hist_e: Any, hist_liked: Any, hist_mask: Any, cand_slot: Any,
                 cand_e: Any) -> Any:
        import torch

        net = self.net_
        z_c = net.proj(cand_e)  # [C, h]
        glob = net.head(cand_e).squeeze(-1)
        if hist_e.shape[1] == 0:
            return glob
        sign = hist_liked.long()
        z_h = net.proj(hist_e)  # [U, H, h]
        keys = net.key(z_h) + net.key_sign(sign)
        values = net.value(z_h) * net.value_gate(sign) + net.value_sign(sign)
        q = net.query(z_c)
        logits = torch.einsum("ch,chk->ck", q, keys[cand_slot].transpose(1, 2))
        logits = (logits / math.sqrt(self.hidden)).masked_fill(~hist_mask, float("-inf"))
        att = torch.softmax(logits, dim=1)
        att = torch.where(hist_mask.any(1, keepdim=True), att, torch.zeros_like(att))
        read = torch.einsum("ck,ckh->ch", att, values[cand_slot])
        return glob + (net.out(read) * z_c).sum(1)
