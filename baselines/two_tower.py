"""``two-tower``: a trained user tower and item tower over content embeddings, retrieved by faiss.

ImageGem's best first-stage image retriever (Recall@100 0.2402 over a 1M pool). Here:

- item tower  f(e_i) = normalise(e_i + W2 relu(W1 e_i + b1) + b2), e_i the item's content
  embedding; W2, b2 start at zero, so the tower starts as the identity;
- user tower  g(p_u) = normalise(p_u + V2 relu(V1 p_u + c1) + c2) over the pooled history
  p_u = normalise(sum_{j in H_u} e_j), so it scores any user with a history (no id table) and
  starts exactly as ``clip-mean``;
- score(u, i) = <g(p_u), f(e_i)>.

Training: every training interaction (u, i) is a positive; the user input leaves i out
(p_u^{-i} = normalise(sum_{j in H_u, j != i} e_j)), so the towers learn to predict an item from
the rest of the history, not to recognise it. Loss: in-batch sampled softmax with the logQ
correction (Yi et al., RecSys 2019),

    L = - mean_b log softmax_b'( <g_b, f_b'> / tau - log q_{i_b'} )[b],

q_i the item's share of training interactions, other rows holding the same item masked.
Early stopping: the runner hands a method its fit data only (train + valid at test time), so
the method holds out each user's latest interaction (for up to ``val_users`` users with at
least 3) and stops when Recall@``val_k`` on them has not improved for ``patience`` epochs,
keeping the best epoch (epoch 0 = the clip-mean start). Seeded and deterministic on CPU for a
given thread count. Retrieval goes through faiss (see baselines/_retrieval.py).
"""

from __future__ import annotations

import numpy as np

from baselines._content import item_embeddings, normalise_rows
from baselines._retrieval import FaissRetrieval
from benchmark.progress import progress_bar
from benchmark.protocols import InteractionData, SideInfo


class TwoTower(FaissRetrieval):
    name = "two-tower"
    search_space = {"temperature": [0.02, 0.05, 0.1], "lr": [3e-4, 1e-3, 3e-3],
                    "hidden": [128, 256]}

    def __init__(
        self,
        hidden: int = 128,
        epochs: int = 4,
        batch_size: int = 512,
        lr: float = 1e-3,
        weight_decay: float = 0.0,
        temperature: float = 0.05,
        logq: bool = True,
        early_stopping: bool = True,
        patience: int = 1,
        val_users: int = 1000,
        val_k: int = 50,
        encoder: str | None = None,
        index: str = "flat",
        n_candidates: int = 100,
        nlist: int | None = None,
        nprobe: int = 8,
        m: int = 32,
        ef_search: int = 128,
        device: str = "auto",
        seed: int = 0,
        threads: int | None = 1,
        progress: bool = True,
    ):
        self.hidden = hidden
        self.epochs = epochs
        self.batch_size = batch_size
        self.lr = lr
        self.weight_decay = weight_decay
        self.temperature = temperature
        self.logq = logq
        self.early_stopping = early_stopping
        self.patience = patience
        self.val_users = val_users
        self.val_k = val_k
        self.encoder = encoder
        self.index = index
        self.n_candidates = n_candidates
        self.nlist = nlist
        self.nprobe = nprobe
        self.m = m
        self.ef_search = ef_search
        self.device = device
        self.seed = seed
        self.threads = threads
        self.progress = progress

    # ------------------------------------------------------------------------------------
    def fit(self, train: InteractionData, side: SideInfo) -> TwoTower:
        """Train the towers (torch on ``threads`` CPU threads, restored after), then index."""
        import torch

        previous = torch.get_num_threads()
        if self.threads:  # small matrices: one thread is faster than two contended ones
            torch.set_num_threads(int(self.threads))
        try:
            return self._fit(train, side)
        finally:
            torch.set_num_threads(previous)

    def _fit(self, train: InteractionData, side: SideInfo) -> TwoTower:
        import torch

        emb, self.encoder_ = item_embeddings(train, side, self.encoder)
        users = train.frame["user_idx"].to_numpy()
        items = train.frame["item_idx"].to_numpy()
        val_rows = self._validation_rows(users) if self.early_stopping else np.empty(0, int)
        fit_rows = np.setdiff1d(np.arange(len(users)), val_rows)
        hist = _history(users[fit_rows], items[fit_rows], train.n_users, train.n_items)
        sums = np.asarray(hist @ emb, dtype=np.float32)  # S_u over the fitting rows
        counts = np.diff(hist.indptr)
        # positives: fitting rows whose user has another item to pool
        pos = fit_rows[counts[users[fit_rows]] > 1]
        freq = np.bincount(items[pos], minlength=train.n_items).astype(np.float64)
        log_q = np.log(np.maximum(freq, 1.0) / max(1.0, freq.sum())).astype(np.float32)

        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(int(self.seed))
            user_tower = _Tower(emb.shape[1], int(self.hidden))
            item_tower = _Tower(emb.shape[1], int(self.hidden))
        params = list(user_tower.parameters()) + list(item_tower.parameters())
        opt = torch.optim.Adam(params, lr=float(self.lr), weight_decay=float(self.weight_decay))
        emb_t = torch.from_numpy(emb)
        sums_t = torch.from_numpy(sums)
        log_q_t = torch.from_numpy(log_q)
        rng = np.random.default_rng([int(self.seed), 11])
        val = self._val_data(users, items, val_rows, hist, sums)
        best = self._validate(user_tower, item_tower, emb_t, val)
        best_state, best_epoch, waited = _state(user_tower, item_tower), 0, 0
        self.history_ = [{"epoch": 0, "loss": float("nan"), "val_recall": best}]
        steps = max(1, int(np.ceil(len(pos) / int(self.batch_size))))
        with progress_bar(total=int(self.epochs) * steps, desc="two-tower", unit="step",
                          enabled=bool(self.progress)) as bar:
            for epoch in range(1, int(self.epochs) + 1):
                order = pos[rng.permutation(len(pos))]
                total = 0.0
                for s in range(steps):
                    rows = order[s * int(self.batch_size) : (s + 1) * int(self.batch_size)]
                    if len(rows) < 2:
                        bar.update(1)
                        continue
                    u = torch.from_numpy(users[rows])
                    i = torch.from_numpy(items[rows])
                    loss = self._loss(user_tower, item_tower, sums_t[u] - emb_t[i], emb_t[i],
                                      i, log_q_t)
                    opt.zero_grad()
                    loss.backward()
                    opt.step()
                    total += float(loss.detach()) * len(rows)
                    bar.update(1)
                score = self._validate(user_tower, item_tower, emb_t, val)
                self.history_.append({"epoch": epoch, "loss": total / max(1, len(pos)),
                                      "val_recall": score})
                bar.set_postfix_str(f"loss {total / max(1, len(pos)):.3f} val {score:.4f}")
                if val is None or score > best:
                    best, best_state, best_epoch, waited = (
                        score, _state(user_tower, item_tower), epoch, 0)
                else:
                    waited += 1
                    if waited >= int(self.patience):
                        break
        user_tower.load_state_dict(best_state[0])
        item_tower.load_state_dict(best_state[1])
        self.best_epoch_ = best_epoch
        self.val_recall_ = best
        full = np.asarray(train.matrix @ emb, dtype=np.float32)  # all of the fit data
        with torch.no_grad():
            user_vec = _apply(user_tower, normalise_rows(full))
            item_vec = _apply(item_tower, emb)
        self.towers_ = (user_tower, item_tower)
        self._fit_index(user_vec, item_vec, np.diff(train.matrix.indptr))
        self.extra_["two_tower_best_epoch"] = float(best_epoch)
        return self

    # ------------------------------------------------------------------------------------
    def _loss(self, user_tower, item_tower, pooled, item_emb, item_idx, log_q):
        import torch

        u = user_tower(_normalise_t(pooled))
        v = item_tower(item_emb)
        logits = (u @ v.T) / float(self.temperature)
        if self.logq:
            logits = logits - log_q[item_idx][None, :]
        same = item_idx[:, None] == item_idx[None, :]
        same.fill_diagonal_(False)
        logits = logits.masked_fill(same, float("-inf"))
        target = torch.arange(len(item_idx))
        return torch.nn.functional.cross_entropy(logits, target)

    def _validation_rows(self, users: np.ndarray) -> np.ndarray:
        """Each sampled user's latest row (frame is sorted by user, then time)."""
        if len(users) == 0:
            return np.empty(0, np.int64)
        sizes = np.bincount(users)
        last = np.cumsum(sizes) - 1
        eligible = np.flatnonzero(sizes >= 3)
        rng = np.random.default_rng([int(self.seed), 13])
        chosen = rng.choice(eligible, size=min(len(eligible), int(self.val_users)), replace=False)
        return np.sort(last[chosen])

    def _val_data(self, users, items, val_rows, hist, sums):
        if len(val_rows) == 0:
            return None
        vu = users[val_rows]
        return {"pooled": normalise_rows(sums[vu]), "target": items[val_rows],
                "mask": hist[vu]}

    def _validate(self, user_tower, item_tower, emb_t, val) -> float:
        """Recall@val_k of each held-out latest item, training items masked (full ranking)."""
        import torch

        if val is None:
            return 0.0
        with torch.no_grad():
            item_vec = item_tower(emb_t)
            user_vec = user_tower(torch.from_numpy(val["pooled"]))
            hits = 0
            k = min(int(self.val_k), item_vec.shape[0])
            for s in range(0, len(user_vec), 256):
                scores = user_vec[s : s + 256] @ item_vec.T
                mask = val["mask"][s : s + 256].tocoo()
                scores[torch.from_numpy(mask.row), torch.from_numpy(mask.col)] = float("-inf")
                top = torch.topk(scores, k, dim=1).indices.numpy()
                hits += int((top == val["target"][s : s + 256, None]).any(axis=1).sum())
        return hits / len(user_vec)


def _Tower(dim: int, hidden: int):
    """Residual MLP x -> normalise(x + W2 relu(W1 x + b1) + b2), W2 = b2 = 0 at start."""
    import torch

    class Tower(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.inner = torch.nn.Linear(dim, hidden)
            self.outer = torch.nn.Linear(hidden, dim)
            torch.nn.init.zeros_(self.outer.weight)
            torch.nn.init.zeros_(self.outer.bias)

        def forward(self, x):
            return _normalise_t(x + self.outer(torch.relu(self.inner(x))))

    return Tower()


def _normalise_t(x):
    return x / x.norm(dim=-1, keepdim=True).clamp_min(1e-12)


def _apply(tower, x: np.ndarray, block: int = 65536) -> np.ndarray:
    import torch

    out = [tower(torch.from_numpy(np.ascontiguousarray(x[s : s + block]))).numpy()
           for s in range(0, len(x), block)]
    return np.concatenate(out).astype(np.float32) if out else np.zeros((0, x.shape[1]),
                                                                        np.float32)


def _state(user_tower, item_tower):
    return ({k: v.clone() for k, v in user_tower.state_dict().items()},
            {k: v.clone() for k, v in item_tower.state_dict().items()})


def _history(users: np.ndarray, items: np.ndarray, n_users: int, n_items: int):
    import scipy.sparse as sp

    m = sp.csr_matrix((np.ones(len(users), np.float32), (users, items)), shape=(n_users, n_items))
    m.sum_duplicates()
    m.data[:] = 1.0
    return m
