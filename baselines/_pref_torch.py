"""Shared machinery of the torch preference baselines (history-attention, preference-tokens).

Both encode a user from the items of their own judgements, so they need no per-user parameters
and serve a held-out user from the k few-shot pairs that ``evaluate_preference`` passes to
``fit``. This module holds what they share:

* :func:`user_histories`: per-user padded arrays of (item, liked?, source pair) built from the
  pairs (label 1: ``image_a`` liked, ``image_b`` disliked; label 0 the reverse; ties carry no
  direction and are left out);
* :func:`carve_validation`: a seeded per-user share of the pairs kept for early stopping;
* :class:`TorchPreferenceModel`: the fit loop (users in seeded mini-batches, Adam, early
  stopping on the validation Bradley–Terry loss after at least ``min_epochs`` — the mixture
  models sit on a plateau for a few epochs before they break symmetry —, a progress bar) and
  batched scoring.

A training pair is scored with its own two items masked out of the user's history
(leave-pair-out), so the model cannot learn to look its answer up; at score time the whole
history is used.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from benchmark.core.params import Params
from benchmark.errors import DataError
from benchmark.progress import progress_bar
from benchmark.protocols import SideInfo
from benchmark.tracks.preference.track import DEFAULT_ENCODER, image_embeddings, lookup


class ParamsMixin(Params):
    """``get_params`` / ``set_params`` read from the ``__init__`` signature (scikit-learn)."""

    name = "method"


@dataclass
class Histories:
    """Padded per-user histories; ``item = -1`` marks padding."""

    users: pd.Index  # user ids, row r of the arrays
    item: np.ndarray  # int64 [n_users, H], row in the compact embedding table
    liked: np.ndarray  # bool [n_users, H]
    pair: np.ndarray  # int64 [n_users, H], the training pair the entry came from


def _codes(values: pd.Series | np.ndarray) -> np.ndarray:
    return np.asarray(values, dtype=object).astype(str)


def user_histories(users: np.ndarray, liked: np.ndarray, disliked: np.ndarray,
                   label: np.ndarray, max_pairs: int, seed: int) -> Histories:
    """Histories from pairs already mapped to item rows.

    Each non-tie pair adds its liked and its disliked item. A user with more than
    ``max_pairs`` non-tie pairs keeps a seeded random ``max_pairs`` of them.
    """
    keep = label != 0.5
    rows = np.flatnonzero(keep)
    codes, uniq = pd.factorize(users, sort=True)
    index = pd.Index(uniq, dtype=object)
    n_users = len(index)
    if len(rows) == 0 or n_users == 0:
        empty = np.full((n_users, 0), -1, np.int64)
        return Histories(index, empty, empty.astype(bool), empty.copy())
    rng = np.random.default_rng(seed)
    key = rng.random(len(rows))
    order = np.lexsort((key, codes[rows]))
    rows = rows[order]
    user = codes[rows]
    start = np.r_[0, np.flatnonzero(np.diff(user)) + 1]
    counts = np.diff(np.r_[start, len(user)])
    rank = np.arange(len(user)) - np.repeat(start, counts)
    sel = rank < max_pairs
    rows, user, rank = rows[sel], user[sel], rank[sel]
    width = 2 * int(min(max_pairs, counts.max()))
    item = np.full((n_users, width), -1, np.int64)
    like = np.zeros((n_users, width), bool)
    pair = np.full((n_users, width), -1, np.int64)
    item[user, 2 * rank], item[user, 2 * rank + 1] = liked[rows], disliked[rows]
    like[user, 2 * rank] = True
    pair[user, 2 * rank] = pair[user, 2 * rank + 1] = rows
    return Histories(index, item, like, pair)


def carve_validation(users: np.ndarray, ratio: float, seed: int, min_pairs: int = 5
                     ) -> np.ndarray:
    """Boolean mask of validation pairs: per user with >= ``min_pairs`` pairs, a seeded
    ``max(1, round(ratio * n))`` of them; users with fewer pairs keep all for training."""
    codes, _ = pd.factorize(users, sort=True)
    if len(codes) == 0 or ratio <= 0:
        return np.zeros(len(codes), bool)
    rng = np.random.default_rng(seed)
    order = np.lexsort((rng.random(len(codes)), codes))
    n = np.bincount(codes)
    rank = np.empty(len(codes), np.int64)
    start = np.r_[0, np.cumsum(n)[:-1]]
    rank[order] = np.arange(len(codes)) - np.repeat(start, n)
    n_val = np.where(n >= min_pairs, np.maximum(1, np.round(ratio * n)), 0).astype(np.int64)
    return rank < n_val[codes]


def _user_rows(hist: Histories, rows: np.ndarray) -> tuple[np.ndarray, ...]:
    """(items, liked, pair) history rows of ``rows`` (-1 = a user without history)."""
    if len(hist.users) == 0:
        empty = np.full((len(rows), 0), -1, np.int64)
        return empty, empty.astype(bool), empty
    r = np.maximum(rows, 0)
    return hist.item[r], hist.liked[r], hist.pair[r]


def _ranges(starts: np.ndarray, ends: np.ndarray) -> np.ndarray:
    """Concatenation of ``arange(s, e)`` for each (s, e), vectorised."""
    lens = ends - starts
    total = int(lens.sum())
    if total == 0:
        return np.zeros(0, np.int64)
    offsets = np.repeat(starts - np.r_[0, np.cumsum(lens)[:-1]], lens)
    return offsets + np.arange(total)


class TorchPreferenceModel(ParamsMixin):
    """Base class: subclasses build ``self.net_`` (an ``nn.Module``) in :meth:`_build` and
    compute utilities in :meth:`_utility`; this class does data, training and scoring."""

    #: loss of the training batches: "bt" (Bradley–Terry) or "contrastive"
    loss = "bt"

    # hyper-parameters every subclass takes (set by the subclass __init__)
    encoder: str = DEFAULT_ENCODER
    max_history: int = 64
    valid_ratio: float = 0.1
    max_epochs: int = 40
    patience: int = 4
    min_epochs: int = 10
    lr: float = 3e-3
    weight_decay: float = 1e-4
    batch_pairs: int = 256
    seed: int = 0
    threads: int = 1
    progress: bool = True

    # to implement ---------------------------------------------------------------------
    def _build(self, dim: int) -> Any:  # pragma: no cover - abstract
        raise NotImplementedError

    def _utility(self, hist_e: Any, hist_liked: Any, hist_mask: Any, cand_slot: Any,
                 cand_e: Any) -> Any:  # pragma: no cover - abstract
        """Utility of each candidate for the user in slot ``cand_slot`` of the batch.

        ``hist_e`` [U, H, d] history embeddings, ``hist_liked`` [U, H] bool, ``hist_mask``
        [C, H] bool (entries each candidate may attend to), ``cand_e`` [C, d].
        """
        raise NotImplementedError

    # data -----------------------------------------------------------------------------
    def _prepare(self, train: pd.DataFrame, side: SideInfo) -> dict[str, np.ndarray]:
        missing = [c for c in ("user_id", "image_a", "image_b", "label") if c not in train]
        if missing:
            raise DataError(f"training pairs lack columns {missing}",
                            rule="pairs have columns user_id, image_a, image_b, label")
        self.ids_, self.emb_ = image_embeddings(side, self.encoder)
        a = lookup(self.ids_, _codes(train["image_a"]))
        b = lookup(self.ids_, _codes(train["image_b"]))
        label = train["label"].to_numpy(np.float64)
        bad = np.flatnonzero(~np.isin(label, (0.0, 0.5, 1.0)))
        if len(bad):
            raise DataError(f"training pair label {float(label[bad[0]])!r} is not 0, 0.5 or 1",
                            row=int(bad[0]) + 1,
                            rule="label 1: image_a preferred, 0: image_b, 0.5: tie")
        used, inverse = np.unique(np.r_[a, b], return_inverse=True)
        self.table_rows_ = used  # compact table row -> row of the embedding matrix
        return {"users": _codes(train["user_id"]), "a": inverse[: len(a)],
                "b": inverse[len(a):], "label": label}

    def _histories(self, d: dict[str, np.ndarray], rows: np.ndarray) -> Histories:
        win = d["label"][rows] > 0.5
        liked = np.where(win, d["a"][rows], d["b"][rows])
        disliked = np.where(win, d["b"][rows], d["a"][rows])
        h = user_histories(d["users"][rows], liked, disliked, d["label"][rows],
                           self.max_history, self.seed)
        h.pair = np.where(h.pair >= 0, rows[np.maximum(h.pair, 0)], -1)
        return h

    # core -----------------------------------------------------------------------------
    def _batch_scores(self, hist: Histories, table: Any, slots_users: np.ndarray,
                      cand_user_slot: np.ndarray, cand_rows: Any, exclude: np.ndarray) -> Any:
        """Utilities of candidates (rows of ``table`` or an embedding tensor) whose users are
        ``slots_users`` (history rows, -1 = no history); ``exclude`` = pair id to mask."""
        import torch

        items, liked_np, pair_np = _user_rows(hist, slots_users)
        valid = (items >= 0) & (slots_users >= 0)[:, None]
        hist_e = table[torch.from_numpy(np.maximum(items, 0))]
        liked = torch.from_numpy(liked_np)
        pair = pair_np[cand_user_slot]
        mask = valid[cand_user_slot] & (pair != exclude[:, None])
        cand_e = table[torch.from_numpy(cand_rows)] if isinstance(cand_rows, np.ndarray) \
            else cand_rows
        return self._utility(hist_e, liked, torch.from_numpy(mask),
                             torch.from_numpy(cand_user_slot), cand_e)

    def _pair_loss(self, hist: Histories, table: Any, d: dict[str, np.ndarray],
                   hist_row: np.ndarray, rows: np.ndarray, loss: str) -> Any:
        import torch
        import torch.nn.functional as F

        slots_users, slot = np.unique(hist_row[rows], return_inverse=True)
        cand_slot = np.r_[slot, slot]
        cand = np.r_[d["a"][rows], d["b"][rows]]
        excl = np.r_[rows, rows]
        s = self._batch_scores(hist, table, slots_users, cand_slot, cand, excl)
        n = len(rows)
        diff = s[:n] - s[n:]
        label = torch.from_numpy(d["label"][rows]).float()
        if loss == "bt":
            return F.binary_cross_entropy_with_logits(diff, label, reduction="mean")
        # contrastive: each liked item against every disliked item of the same user
        hard = label != 0.5
        win = label > 0.5
        pos = torch.where(win, s[:n], s[n:]) / self.temperature
        neg = torch.where(win, s[n:], s[:n]) / self.temperature
        same = torch.from_numpy(slot[:, None] == slot[None, :]) & hard[None, :]
        neg_logits = neg[None, :].expand(n, n).masked_fill(~same, float("-inf"))
        logits = torch.cat([pos[:, None], neg_logits], dim=1)
        nll = torch.logsumexp(logits, dim=1) - pos
        return nll[hard].mean() if bool(hard.any()) else diff.sum() * 0.0

    def fit(self, train: pd.DataFrame, side: SideInfo) -> TorchPreferenceModel:
        """Train on ``train`` (early stopping on a per-user seeded validation share), then
        keep every pair's items as the users' histories for scoring."""
        import torch

        d = self._prepare(train, side)
        n = len(d["label"])
        prev_det = torch.are_deterministic_algorithms_enabled()
        prev_threads = torch.get_num_threads()
        torch.use_deterministic_algorithms(True)
        torch.set_num_threads(self.threads)  # small tensors: one thread beats contention
        try:
            torch.manual_seed(self.seed)
            rows_e = self.table_rows_
            table = torch.from_numpy(np.asarray(self.emb_[rows_e], np.float32)) \
                if len(rows_e) else torch.zeros((0, self.emb_.shape[1]))
            self.dim_ = int(self.emb_.shape[1])
            self.net_ = self._build(self.dim_)
            is_val = carve_validation(d["users"], self.valid_ratio, self.seed)
            fit_rows = np.flatnonzero(~is_val)
            val_rows = np.flatnonzero(is_val)
            self.history_ = []
            self.best_epoch_ = 0
            if len(fit_rows):
                self._train(d, table, fit_rows, val_rows)
            # final histories: every judgement given to fit
            self.hist_ = self._histories(d, np.arange(n))
            self.table_ = table
        finally:
            torch.use_deterministic_algorithms(prev_det)
            torch.set_num_threads(prev_threads)
        self.net_.eval()
        return self

    def _train(self, d: dict[str, np.ndarray], table: Any, fit_rows: np.ndarray,
               val_rows: np.ndarray) -> None:
        import copy

        import torch

        hist = self._histories(d, fit_rows)
        hist_row = hist.users.get_indexer(d["users"])  # -1 for users with no fit pairs
        order = fit_rows[np.argsort(hist_row[fit_rows], kind="stable")]
        users_sorted = hist_row[order]
        n_hist = len(hist.users)
        ptr = np.searchsorted(users_sorted, np.arange(n_hist + 1))
        opt = torch.optim.Adam(self.net_.parameters(), lr=self.lr,
                               weight_decay=self.weight_decay)
        rng = np.random.default_rng(self.seed)
        best, best_state, bad = np.inf, None, 0
        with progress_bar(total=self.max_epochs, desc=self.name, unit="epoch",
                          enabled=self.progress) as bar:
            for epoch in range(self.max_epochs):
                self.net_.train()
                perm = rng.permutation(n_hist)
                # whole users per mini-batch, about batch_pairs pairs each
                cum = np.cumsum(ptr[perm + 1] - ptr[perm])
                cuts = np.flatnonzero(np.diff((cum - 1) // self.batch_pairs)) + 1
                total = 0.0
                for chunk in np.split(perm, cuts):
                    rows = order[_ranges(ptr[chunk], ptr[chunk + 1])]
                    if len(rows) == 0:
                        continue
                    loss = self._pair_loss(hist, table, d, hist_row, rows, self.loss)
                    opt.zero_grad()
                    loss.backward()
                    opt.step()
                    total += float(loss.detach()) * len(rows)
                val = self._val_loss(hist, table, d, hist_row, val_rows)
                self.history_.append({"epoch": epoch + 1, "train_loss": total / len(fit_rows),
                                      "valid_loss": val})
                bar.update(1)
                bar.set_postfix_str(f"valid {val:.4f}" if np.isfinite(val) else "")
                if not np.isfinite(val):
                    continue  # no validation pairs: train max_epochs
                if val < best - 1e-5:
                    best, bad, self.best_epoch_ = val, 0, epoch + 1
                    best_state = copy.deepcopy(self.net_.state_dict())
                else:
                    bad += 1
                    if bad >= self.patience and epoch + 1 >= self.min_epochs:
                        break
        if best_state is not None:
            self.net_.load_state_dict(best_state)
        else:
            self.best_epoch_ = len(self.history_)

    def _val_loss(self, hist: Histories, table: Any, d: dict[str, np.ndarray],
                  hist_row: np.ndarray, val_rows: np.ndarray) -> float:
        """Mean Bradley–Terry loss of the validation pairs (histories = fit pairs only)."""
        import torch

        if len(val_rows) == 0:
            return float("nan")
        self.net_.eval()
        with torch.no_grad():
            loss = self._pair_loss(hist, table, d, hist_row, val_rows, "bt")
        return float(loss)

    # ------------------------------------------------------------------ saving (judges)
    def get_state(self) -> dict[str, Any]:
        """Learned state as arrays and JSON values, for :mod:`benchmark.judge` (no pickle)."""
        state: dict[str, Any] = {
            "ids_": self.ids_, "emb_": self.emb_, "table_rows_": self.table_rows_,
            "dim_": self.dim_, "history_": [{k: float(v) for k, v in h.items()}
                                            for h in self.history_],
            "best_epoch_": int(self.best_epoch_), "hist_users_": self.hist_.users,
            "hist_item_": self.hist_.item, "hist_liked_": self.hist_.liked,
            "hist_pair_": self.hist_.pair, "table_": self.table_.numpy(),
        }
        for name, tensor in self.net_.state_dict().items():
            state[f"net.{name}"] = tensor.detach().cpu().numpy()
        return state

    def set_state(self, state: dict[str, Any]) -> None:
        """Inverse of :meth:`get_state`: rebuild the network and load its weights."""
        import torch

        for name in ("ids_", "emb_", "table_rows_", "history_", "best_epoch_"):
            setattr(self, name, state[name])
        self.dim_ = int(state["dim_"])
        self.hist_ = Histories(users=pd.Index(state["hist_users_"], dtype=object),
                               item=state["hist_item_"], liked=state["hist_liked_"],
                               pair=state["hist_pair_"])
        self.table_ = torch.from_numpy(np.asarray(state["table_"], np.float32))
        self.net_ = self._build(self.dim_)
        self.net_.load_state_dict({k[4:]: torch.from_numpy(np.asarray(v))
                                   for k, v in state.items() if k.startswith("net.")})
        self.net_.eval()

    def score(self, user_ids: np.ndarray, image_ids: np.ndarray) -> np.ndarray:
        """Utility of each image for its user (float32); unknown users get the global head."""
        rows = lookup(self.ids_, np.asarray(image_ids, dtype=object).astype(str))
        return self.score_embeddings(user_ids, np.asarray(self.emb_[rows], np.float32))

    def score_embeddings(self, user_ids: np.ndarray, embeddings: np.ndarray) -> np.ndarray:
        """Utility of each embedding (a new render, say) for its user (float32)."""
        import torch

        users = _codes(user_ids)
        embeddings = np.asarray(embeddings, np.float32)
        out = np.zeros(len(users), np.float32)
        if len(users) == 0:
            return out
        hist_row = self.hist_.users.get_indexer(users)
        order = np.argsort(hist_row, kind="stable")
        # chunks of at most 256 users and 8192 candidates bound the gathered histories
        _, first = np.unique(hist_row[order], return_index=True)
        bounds = sorted({*first[::256].tolist(), *range(0, len(order), 8192), len(order)})
        prev_threads = torch.get_num_threads()
        torch.set_num_threads(self.threads)
        with torch.no_grad():
            for s, e in zip(bounds[:-1], bounds[1:], strict=True):
                idx = order[s:e]
                slots_users, slot = np.unique(hist_row[idx], return_inverse=True)
                cand_e = torch.from_numpy(embeddings[idx])
                u = self._batch_scores(self.hist_, self.table_, slots_users, slot, cand_e,
                                       np.full(len(idx), -2, np.int64))
                out[idx] = u.numpy()
        torch.set_num_threads(prev_threads)
        return out
