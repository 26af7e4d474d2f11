"""``vlm-rerank``: a vision-language model reorders a first stage's top-N.

Two scoring modes (``mode``):

* ``yes-no``: one prompt per (user, candidate) showing the user's ``n_history`` most
  recent history images, then the candidate image, asking whether the user would like
  it. ``score = log p("Yes") - log p("No")`` at the next-token position (each answer's
  probability summed over its spellings "Yes" / " Yes" -- BPE tokenizers differ in
  whether the answer after the assistant tag starts with a space).
* ``describe-then-score`` (ImageGem's): the VLM first writes the user's taste from their
  history images (greedy, ``max_description_tokens``); then one prompt per candidate
  *order* shows that text and all the candidates labelled A, B, C, ... and asks which
  one the user would like most. A candidate's score in one order is the log-probability
  of its label among the candidates' labels (log-softmax over those label tokens);
  its final score is the mean over ``n_orders`` orders. What is randomised: the order in
  which the candidates appear (and so which letter each one gets), per user and order,
  seeded by ``(seed, user id, order)``; this averages out the position bias of
  list-wise prompts, which is why ImageGem randomised it.

Images: ``images`` (or ``--images``, reaching the method as ``side.extra["images"]``) is a
folder (an image's id is its relative path without extension) or a table with id and
``path`` columns (``benchmark.embed.list_images``). A LoRA is represented by its
earliest image in the data set's ``images`` table (``lora_ids``) that has a file, or by an
entry of ``images`` keyed by the LoRA id itself. A candidate without an image gets
``-inf`` (ranked last) and is counted in ``stats_["n_missing_images"]``.

Cache: every score is stored in ``cache_dir/vlm_rerank.sqlite`` under
``sha256(model, mode, user id, item id, context)``, where the context is everything else
the score depends on (the history item ids, the prompt version, and for the list-wise
mode the candidate set, ``n_orders`` and ``seed``), so a rerun makes 0 model calls and does
not even load the weights. Costs are counted in ``stats_``: ``n_model_calls`` (forward or
generate calls, each one batch of up to ``batch_size`` prompts), ``model_seconds``,
``n_prompts``, ``cache_hits``.

Engines (``engine``): ``local`` runs the model in this process. ``ray`` sends the prompts
whose scores are missing from the cache (plain data: image paths, the description if
cached) as Ray Data ``map_batches`` to a pool of ``workers`` actors
(:class:`VLMWorker` on :func:`benchmark.actor_map.actor_map`, one VLM loaded per actor,
``gpus_per_worker`` GPUs each, at ``address`` or a local Ray); the driver writes each
returned batch into the same cache and counts its model calls, then scores come from the
cache as locally. So a lost worker loses nothing already cached and a rerun makes 0 calls
with either engine.

transformers: ``AutoProcessor`` + ``AutoModelForImageTextToText`` (the image-text-to-text
auto class of transformers 5), prompts built with the processor's chat template, left
padding for batches (the next-token position is the last column).
"""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from benchmark.errors import DataError, NotApplicable
from benchmark.protocols import InteractionData, RankingMethod, SideInfo

MODES = ("yes-no", "describe-then-score")
PROMPT_VERSION = 1
LABELS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"

_NOUN = {"image": ("images this user liked", "a new image"),
         "lora": ("images made with models (LoRAs) this user used",
                  "an image made with a new model")}


# ------------------------------------------------------------------------------ prompts
def yes_no_messages(n_history: int, item_kind: str = "image") -> list[dict[str, Any]]:
    """Chat messages: ``n_history`` image slots, then the candidate's slot last."""
    liked, new = _NOUN[item_kind]
    content: list[dict[str, Any]] = []
    if n_history:
        content.append({"type": "text", "text": f"Here are {liked}:"})
        content += [{"type": "image"} for _ in range(n_history)]
    content += [{"type": "text", "text": f"Here is {new}:"}, {"type": "image"},
                {"type": "text", "text": "Would this user like the new image? Answer Yes or No."}]
    return [{"role": "user", "content": content}]


def describe_messages(n_history: int, item_kind: str = "image") -> list[dict[str, Any]]:
    """Chat messages asking for a one-sentence description of the taste shown in history."""
    liked, _ = _NOUN[item_kind]
    content = [{"type": "text", "text": f"Here are {liked}:"}]
    content += [{"type": "image"} for _ in range(n_history)]
    content.append({"type": "text",
                    "text": "Describe this user's visual taste in one short sentence."})
    return [{"role": "user", "content": content}]


def choice_messages(description: str, n_candidates: int) -> list[dict[str, Any]]:
    """Chat messages: the taste text, then candidates labelled A, B, ... in the given order."""
    content: list[dict[str, Any]] = [
        {"type": "text", "text": f"A user's taste is described as: {description}"}]
    for j in range(n_candidates):
        content += [{"type": "text", "text": f"Image {LABELS[j]}:"}, {"type": "image"}]
    content.append({"type": "text", "text": "Which image would this user like most? "
                                            "Answer with its letter."})
    return [{"role": "user", "content": content}]


# ------------------------------------------------------------------------------- cache
class ScoreCache:
    """A small sqlite key -> (score, text) store; one file, safe to reopen across runs."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(self.path)
        self._db.execute("CREATE TABLE IF NOT EXISTS scores "
                         "(key TEXT PRIMARY KEY, score REAL, text TEXT)")

    def get_many(self, keys: Sequence[str]) -> dict[str, tuple[float | None, str | None]]:
        out: dict[str, tuple[float | None, str | None]] = {}
        keys = list(keys)
        for start in range(0, len(keys), 500):
            part = keys[start : start + 500]
            marks = ",".join("?" * len(part))
            for key, score, text in self._db.execute(
                    f"SELECT key, score, text FROM scores WHERE key IN ({marks})", part):
                out[key] = (score, text)
        return out

    def put_many(self, rows: Sequence[tuple[str, float | None, str | None]]) -> None:
        with self._db:
            self._db.executemany("INSERT OR REPLACE INTO scores VALUES (?, ?, ?)", rows)

    def __len__(self) -> int:
        return int(self._db.execute("SELECT COUNT(*) FROM scores").fetchone()[0])

    def close(self) -> None:
        self._db.close()


def cache_key(*parts: Any) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()


# ------------------------------------------------------------------------------ images
def item_image_paths(item_ids: Sequence[str], item_kind: str, images: str | os.PathLike,
                     dataset: Any = None) -> list[str | None]:
    """The image file of each item (``None``: none found); a LoRA by its earliest image."""
    from benchmark.embed import list_images

    ids, paths = list_images(images)
    by_id = {i: str(p) for i, p in zip(ids, paths, strict=True)}
    found = [by_id.get(str(i)) for i in item_ids]
    if item_kind == "lora" and dataset is not None and dataset.has_table("images"):
        table = dataset.table("images", ["image_id", "lora_ids", "created_at"])
        table = table[table["image_id"].astype(str).isin(by_id.keys())]
        rows = table.explode("lora_ids").dropna(subset=["lora_ids"])
        rows = rows.sort_values(["created_at", "image_id"], kind="mergesort")
        first = rows.drop_duplicates("lora_ids", keep="first")
        lora_image = dict(zip(first["lora_ids"].astype(str), first["image_id"].astype(str),
                              strict=True))
        found = [f if f is not None else by_id.get(lora_image.get(str(i), ""))
                 for i, f in zip(item_ids, found, strict=True)]
    return found


# ------------------------------------------------------------------------------ method
class VLMReranker(RankingMethod):
    """Rerank with a transformers VLM; see the module docstring for modes, cache and costs."""

    name = "vlm-rerank"

    def __init__(self, model: str | None = None, mode: str = "yes-no", n_history: int = 4,
                 top_n: int = 50, first_stage: str = "itemknn", n_orders: int = 2,
                 batch_size: int = 8, cache_dir: str | None = ".cache/vlm-rerank",
                 device: str = "auto", dtype: str = "auto",
                 images: str | None = None, max_description_tokens: int = 48, seed: int = 0,
                 engine: str = "local", address: str | None = None, workers: int = 2,
                 gpus_per_worker: float | None = None):
        self.model = model
        self.mode = mode
        self.n_history = n_history
        self.top_n = top_n
        self.first_stage = first_stage
        self.n_orders = n_orders
        self.batch_size = batch_size
        self.cache_dir = cache_dir
        self.device = device
        self.dtype = dtype
        self.images = images
        self.max_description_tokens = max_description_tokens
        self.seed = seed
        self.engine = engine
        self.address = address
        self.workers = workers
        self.gpus_per_worker = gpus_per_worker

    # --------------------------------------------------------------------------- fit
    def fit(self, train: InteractionData, side: SideInfo) -> VLMReranker:
        """Resolve images and histories; the model loads on the first uncached score."""
        if self.mode not in MODES:
            raise ValueError(f"vlm-rerank: mode is one of {MODES}, got {self.mode!r}")
        if self.mode == "describe-then-score" and self.n_orders < 1:
            raise ValueError("vlm-rerank: n_orders must be >= 1")
        if self.engine not in ("local", "ray"):
            raise ValueError(f"vlm-rerank: engine is 'local' or 'ray', got {self.engine!r}")
        images = self.images or side.extra.get("images")
        if images is None:
            raise NotApplicable("vlm-rerank needs image files: pass --images DIR (or a table "
                                "of id,path) and real VLM weights (--param model=...)")
        if not self.model:
            raise NotApplicable("vlm-rerank needs a model: --param model=<hf id or folder>")
        self.item_kind_ = side.item_kind
        self.user_ids_ = [str(u) for u in train.user_ids]
        self.item_ids_ = [str(i) for i in train.item_ids]
        self.item_paths_ = item_image_paths(self.item_ids_, side.item_kind, images,
                                            side.dataset)
        has_image = np.array([p is not None for p in self.item_paths_], dtype=bool)
        if not has_image.any():
            raise NotApplicable(f"no {side.item_kind} has an image file under {images}")
        # the n_history most recent training items with an image, oldest first
        frame = train.frame[has_image[train.frame["item_idx"].to_numpy()]]
        users = frame["user_idx"].to_numpy()
        sizes = np.bincount(users, minlength=train.n_users)
        from_end = sizes[users] - (np.arange(len(users)) - np.repeat(
            np.concatenate([[0], np.cumsum(sizes)[:-1]]), sizes)) - 1
        keep = from_end < self.n_history
        kept_users = users[keep]
        self.history_items_ = frame["item_idx"].to_numpy()[keep].astype(np.int64)
        self.history_ptr_ = np.concatenate(
            [[0], np.cumsum(np.bincount(kept_users, minlength=train.n_users))]).astype(np.int64)
        self.train_matrix_ = train.matrix
        self._fit_args = (train, side)
        self.first_stage_: RankingMethod | None = None
        self.stats_ = {"n_model_calls": 0, "model_seconds": 0.0, "n_prompts": 0,
                       "cache_hits": 0, "n_missing_images": 0, "n_descriptions": 0}
        self._loaded: tuple[Any, Any, str] | None = None
        self._cache: ScoreCache | None = None
        return self

    def history(self, user: int) -> np.ndarray:
        """Dense item indices of the user's prompt history, oldest first."""
        return self.history_items_[self.history_ptr_[user] : self.history_ptr_[user + 1]]

    # ------------------------------------------------------------------------ model
    def _model(self) -> tuple[Any, Any, str]:
        if self._loaded is None:
            import torch
            from transformers import AutoModelForImageTextToText, AutoProcessor

            device = self.device
            if device == "auto":
                device = "cuda" if torch.cuda.is_available() else "cpu"
            dtype = self.dtype
            if dtype == "auto":
                dtype = "bfloat16" if device.startswith("cuda") else "float32"
            try:
                processor = AutoProcessor.from_pretrained(self.model)
                model = AutoModelForImageTextToText.from_pretrained(
                    self.model, dtype=getattr(torch, dtype))
            except Exception as e:  # not local, not cached, not a VLM, ...
                raise NotApplicable(f"vlm-rerank cannot load {self.model!r}: {e}") from e
            processor.tokenizer.padding_side = "left"
            if processor.tokenizer.pad_token is None:
                processor.tokenizer.pad_token = processor.tokenizer.eos_token
            self._loaded = (model.to(device).eval(), processor, device)
        return self._loaded

    def _cache_db(self) -> ScoreCache | None:
        if self.cache_dir is None:
            return None
        if self._cache is None:
            self._cache = ScoreCache(Path(self.cache_dir) / "vlm_rerank.sqlite")
        return self._cache

    def _inputs(self, messages: list[list[dict]], images: list[list[str]]) -> Any:
        from benchmark.embed import _load_image

        model, processor, device = self._model()
        texts = [processor.apply_chat_template(m, add_generation_prompt=True, tokenize=False)
                 for m in messages]
        loaded = []
        for paths in images:
            row = []
            for p in paths:
                im = _load_image(Path(p))
                if im is None:
                    raise DataError("cannot read image", path=str(p),
                                    rule="every image file vlm-rerank uses is readable")
                row.append(im)
            loaded.append(row)
        inputs = processor(text=texts, images=loaded, return_tensors="pt", padding=True)
        return inputs.to(device)

    def next_token_logprobs(self, messages: list[list[dict]], images: list[list[str]]
                            ) -> np.ndarray:
        """``log softmax`` of the next-token logits of each prompt: float64 ``[B, vocab]``."""
        import torch

        model, _, _ = self._model()
        inputs = self._inputs(messages, images)
        t0 = time.perf_counter()
        with torch.inference_mode():
            logits = model(**inputs).logits[:, -1, :].float()
        out = torch.log_softmax(logits, dim=-1).double().cpu().numpy()
        self._count(time.perf_counter() - t0, len(messages))
        return out

    def generate(self, messages: list[list[dict]], images: list[list[str]]) -> list[str]:
        """Greedy, seeded continuations (``max_description_tokens``) of each prompt."""
        import torch

        model, processor, _ = self._model()
        inputs = self._inputs(messages, images)
        t0 = time.perf_counter()
        torch.manual_seed(self.seed)
        with torch.inference_mode():
            out = model.generate(**inputs, max_new_tokens=self.max_description_tokens,
                                 do_sample=False)
        texts = processor.batch_decode(out[:, inputs["input_ids"].shape[1]:],
                                       skip_special_tokens=True)
        self._count(time.perf_counter() - t0, len(messages))
        return [t.strip() for t in texts]

    def _count(self, seconds: float, prompts: int) -> None:
        self.stats_["n_model_calls"] += 1
        self.stats_["model_seconds"] += seconds
        self.stats_["n_prompts"] += prompts

    def answer_ids(self, word: str) -> list[int]:
        """Token ids that start ``word`` as an answer: its first token, with and without a
        leading space (deduplicated, sorted)."""
        _, processor, _ = self._model()
        tok = processor.tokenizer
        ids = {tok.encode(v, add_special_tokens=False)[0] for v in (word, " " + word)}
        return sorted(ids)

    def yes_no_score(self, logprobs: np.ndarray) -> np.ndarray:
        """``logsumexp(logprobs[Yes ids]) - logsumexp(logprobs[No ids])`` per row."""
        from scipy.special import logsumexp

        yes, no = self.answer_ids("Yes"), self.answer_ids("No")
        if set(yes) & set(no):
            raise NotApplicable(f"the tokenizer of {self.model!r} cannot tell Yes from No")
        return logsumexp(logprobs[:, yes], axis=1) - logsumexp(logprobs[:, no], axis=1)

    # ----------------------------------------------------------------------- scoring
    def _path(self, item: int) -> str | None:
        return self.item_paths_[item] if item >= 0 else None

    def rerank(self, user_idx: np.ndarray, items: np.ndarray) -> np.ndarray:
        """Scores ``float32 [n, C]`` for candidate ``items`` (dense indices, -1 padding)."""
        user_idx, items = np.asarray(user_idx), np.asarray(items)
        scores = np.full(items.shape, -np.inf, dtype=np.float64)
        has = np.array([[self._path(int(i)) is not None for i in row] for row in items],
                       dtype=bool).reshape(items.shape)
        self.stats_["n_missing_images"] += int(((items >= 0) & ~has).sum())
        if self.mode == "yes-no":
            self._rerank_yes_no(user_idx, items, has, scores)
        else:
            self._rerank_describe(user_idx, items, has, scores)
        return scores.astype(np.float32)

    def _history_ctx(self, user: int) -> list[str]:
        return [self.item_ids_[i] for i in self.history(user)]

    def _lookup(self, keys: list[str]) -> dict[str, tuple[float | None, str | None]]:
        db = self._cache_db()
        found = db.get_many(keys) if db is not None else {}
        self.stats_["cache_hits"] += len(found)
        return found

    def _store(self, rows: list[tuple[str, float | None, str | None]]) -> None:
        db = self._cache_db()
        if db is not None and rows:
            db.put_many(rows)

    def _rerank_yes_no(self, user_idx: np.ndarray, items: np.ndarray, has: np.ndarray,
                       scores: np.ndarray) -> None:
        rows, cols = np.nonzero(has)
        keys = []
        for r, c in zip(rows, cols, strict=True):
            u, i = int(user_idx[r]), int(items[r, c])
            ctx = [PROMPT_VERSION, self.item_kind_, self._history_ctx(u)]
            keys.append(cache_key(self.model, "yes-no", self.user_ids_[u], self.item_ids_[i],
                                  ctx))
        found = self._lookup(keys)
        todo = [j for j, k in enumerate(keys) if k not in found]
        for j, k in enumerate(keys):
            if k in found:
                scores[rows[j], cols[j]] = found[k][0]
        if self.engine == "ray":
            jobs = []
            for j in todo:
                u, i = int(user_idx[rows[j]]), int(items[rows[j], cols[j]])
                hist = [self.item_paths_[h] for h in self.history(u)]
                jobs.append({"key": keys[j], "images": [*hist, self.item_paths_[i]]})
            for j, v in zip(todo, self._ray_compute("yes-no", jobs), strict=True):
                scores[rows[j], cols[j]] = v
            return
        for start in range(0, len(todo), self.batch_size):
            batch = todo[start : start + self.batch_size]
            messages, images = [], []
            for j in batch:
                u, i = int(user_idx[rows[j]]), int(items[rows[j], cols[j]])
                hist = [self.item_paths_[h] for h in self.history(u)]
                messages.append(yes_no_messages(len(hist), self.item_kind_))
                images.append([*hist, self.item_paths_[i]])
            values = self.yes_no_score(self.next_token_logprobs(messages, images))
            for j, v in zip(batch, values, strict=True):
                scores[rows[j], cols[j]] = v
            self._store([(keys[j], float(v), None) for j, v in zip(batch, values, strict=True)])

    def describe(self, user_idx: np.ndarray) -> list[str]:
        """Each user's taste description (cached; "" for a user with no history image)."""
        keys = [cache_key(self.model, "description", self.user_ids_[int(u)],
                          [PROMPT_VERSION, self.item_kind_, self._history_ctx(int(u)),
                           self.max_description_tokens, self.seed]) for u in user_idx]
        found = self._lookup(keys)
        out = [found[k][1] or "" if k in found else "" for k in keys]
        todo = [j for j, (u, k) in enumerate(zip(user_idx, keys, strict=True))
                if k not in found and len(self.history(int(u)))]
        for start in range(0, len(todo), self.batch_size):
            batch = todo[start : start + self.batch_size]
            hists = [[self.item_paths_[h] for h in self.history(int(user_idx[j]))]
                     for j in batch]
            texts = self.generate([describe_messages(len(h), self.item_kind_) for h in hists],
                                  hists)
            self.stats_["n_descriptions"] += len(batch)
            for j, t in zip(batch, texts, strict=True):
                out[j] = t
            self._store([(keys[j], None, t) for j, t in zip(batch, texts, strict=True)])
        return out

    def candidate_orders(self, user: int, n: int) -> np.ndarray:
        """``[n_orders, n]`` permutations of a user's ``n`` candidates, seeded by
        ``(seed, user id, order)``: order o shows candidate ``perm[o, j]`` at slot j."""
        digest = hashlib.sha256(self.user_ids_[user].encode()).digest()
        base = int.from_bytes(digest[:8], "little")
        return np.stack([np.random.default_rng([self.seed, base, o]).permutation(n)
                         for o in range(self.n_orders)])

    def _rerank_describe(self, user_idx: np.ndarray, items: np.ndarray, has: np.ndarray,
                         scores: np.ndarray) -> None:
        n_slots = int(has.sum(axis=1).max()) if has.size else 0
        if n_slots > len(LABELS):
            raise ValueError(f"describe-then-score labels at most {len(LABELS)} candidates")
        keys: dict[tuple[int, int], str] = {}
        for r, u in enumerate(user_idx):
            cand = sorted(self.item_ids_[int(i)] for i in items[r][has[r]])
            ctx = [PROMPT_VERSION, self.item_kind_, self._history_ctx(int(u)), cand,
                   self.n_orders, self.seed, self.max_description_tokens]
            for c in np.flatnonzero(has[r]):
                keys[(r, int(c))] = cache_key(self.model, "describe-then-score",
                                              self.user_ids_[int(u)],
                                              self.item_ids_[int(items[r, c])], ctx)
        found = self._lookup(list(keys.values()))
        for (r, c), k in keys.items():
            if k in found:
                scores[r, c] = found[k][0]
        todo_rows = sorted({r for (r, c), k in keys.items() if k not in found})
        if not todo_rows:
            return
        if self.engine == "ray":
            self._rerank_describe_ray(user_idx, items, has, scores, keys, todo_rows)
            return
        descriptions = self.describe(user_idx[todo_rows])
        prompts = []  # (row, order, columns in slot order)
        for r, text in zip(todo_rows, descriptions, strict=True):
            cols = np.flatnonzero(has[r])
            for o, perm in enumerate(self.candidate_orders(int(user_idx[r]), len(cols))):
                prompts.append((r, o, cols[perm], text))
        totals = {r: np.zeros(items.shape[1]) for r in todo_rows}
        for start in range(0, len(prompts), self.batch_size):
            batch = prompts[start : start + self.batch_size]
            messages = [choice_messages(t, len(cols)) for _, _, cols, t in batch]
            images = [[self.item_paths_[int(items[r, c])] for c in cols]
                      for r, _, cols, _ in batch]
            lp = self.next_token_logprobs(messages, images)
            for (r, _, cols, _), row in zip(batch, lp, strict=True):
                totals[r][cols] += self.label_logprobs(row, len(cols))
        rows_out = []
        for r in todo_rows:
            for c in np.flatnonzero(has[r]):
                value = float(totals[r][c] / self.n_orders)
                scores[r, c] = value
                rows_out.append((keys[(r, int(c))], value, None))
        self._store(rows_out)

    # ------------------------------------------------------------------------ ray
    def _description_key(self, user: int) -> str:
        return cache_key(self.model, "description", self.user_ids_[user],
                         [PROMPT_VERSION, self.item_kind_, self._history_ctx(user),
                          self.max_description_tokens, self.seed])

    def _rerank_describe_ray(self, user_idx: np.ndarray, items: np.ndarray, has: np.ndarray,
                             scores: np.ndarray, keys: dict[tuple[int, int], str],
                             todo_rows: list[int]) -> None:
        """One job per user: its description (cached text, or generated by the actor) and
        every order's candidate images; the actor returns the per-column mean scores."""
        desc_keys = [self._description_key(int(user_idx[r])) for r in todo_rows]
        cached = self._lookup(desc_keys)
        jobs = []
        for r, dk in zip(todo_rows, desc_keys, strict=True):
            u, cols = int(user_idx[r]), np.flatnonzero(has[r])
            hist = [self.item_paths_[h] for h in self.history(u)]
            text = cached[dk][1] or "" if dk in cached else ("" if not hist else None)
            perms = self.candidate_orders(u, len(cols))
            jobs.append({"key": dk, "history": hist, "description": text,
                         "orders": [[self.item_paths_[int(items[r, cols[p]])] for p in perm]
                                    for perm in perms],
                         "perms": perms.tolist(),
                         "score_keys": [keys[(r, int(c))] for c in cols]})
        got = self._ray_compute("describe-then-score", jobs)
        for r, values in zip(todo_rows, got, strict=True):
            scores[r, np.flatnonzero(has[r])] = values

    def _ray_compute(self, mode: str, jobs: list[dict[str, Any]]) -> list[Any]:
        """Run ``jobs`` on Ray actors in batches of ``batch_size``; store each batch's
        scores (and new descriptions) in the cache as it returns; count its model calls.
        Returns each job's value (a score, or a description job's per-candidate scores)."""
        from benchmark.actor_map import actor_map, auto_gpus, ensure_ray

        out: list[Any] = [None] * len(jobs)
        if not jobs:
            return out
        params = {k: v for k, v in self.get_params().items()
                  if k not in ("engine", "address", "workers", "gpus_per_worker",
                               "cache_dir", "first_stage", "top_n", "images")}
        ensure_ray(self.address)
        device = params.get("device", "auto")
        if device == "auto":
            device = "cuda" if auto_gpus(self.gpus_per_worker) > 0 else "cpu"
        size, drop = max(1, int(self.batch_size)), ("key", "score_keys")
        payloads = [(mode, [{**{k: v for k, v in j.items() if k not in drop}, "id": lo + n}
                            for n, j in enumerate(jobs[lo : lo + size])])
                    for lo in range(0, len(jobs), size)]
        kwargs = {"params": params, "item_kind": self.item_kind_, "device": device}
        for _, (results, stats) in actor_map(VLMWorker, kwargs, payloads, workers=self.workers,
                                             gpus_per_worker=self.gpus_per_worker,
                                             ordered=False):
            rows: list[tuple[str, float | None, str | None]] = []
            for res in results:
                job = jobs[res["id"]]
                out[res["id"]] = res["value"]
                if mode == "yes-no":
                    rows.append((job["key"], float(res["value"]), None))
                    continue
                if job["description"] is None:
                    rows.append((job["key"], None, res["text"]))
                rows += [(k, float(v), None)
                         for k, v in zip(job["score_keys"], res["value"], strict=True)]
            self._store(rows)
            for name, value in stats.items():
                self.stats_[name] += value
        return out

    def label_logprobs(self, logprobs: np.ndarray, n: int) -> np.ndarray:
        """``log p(label_j) - logsumexp_k log p(label_k)`` for the first ``n`` labels."""
        from scipy.special import logsumexp

        per_label = np.array([logsumexp(logprobs[self.answer_ids(LABELS[j])])
                              for j in range(n)])
        return per_label - logsumexp(per_label)

    # ------------------------------------------------------------------ full ranking
    def score(self, user_idx: np.ndarray) -> np.ndarray:
        """Full-ranking use: the first stage's scores, its top ``top_n`` (train items
        excluded) lifted above the rest in the VLM's order."""
        from benchmark.ranking import topk
        from benchmark.registry import resolve_method
        from benchmark.tracks.rerank.track import order_candidates

        if self.first_stage_ is None:
            _, cls = resolve_method(self.first_stage)
            self.first_stage_ = cls().fit(*self._fit_args)
        base = np.array(self.first_stage_.score(user_idx), dtype=np.float32)
        masked = base.copy()
        mask = self.train_matrix_[user_idx]
        masked[np.repeat(np.arange(len(user_idx)), np.diff(mask.indptr)), mask.indices] = -np.inf
        top, _ = topk(masked, self.top_n)
        ordered = order_candidates(top, self.rerank(user_idx, top))
        finite = np.where(np.isfinite(base), base, -np.inf).max(axis=1, initial=0.0)
        lift = (np.maximum(finite, 0.0) + 1.0)[:, None] + np.arange(self.top_n, 0, -1)[None, :]
        rows = np.repeat(np.arange(len(user_idx)), self.top_n).reshape(-1, self.top_n)
        valid = ordered >= 0
        base[rows[valid], ordered[valid]] = lift[valid]
        return base


# ------------------------------------------------------------------------------ Ray
class VLMWorker:
    """One Ray actor's worker (:func:`benchmark.actor_map.actor_map`): loads the VLM once,
    scores whole batches of prompts.

    It runs the reranker's own local code (``next_token_logprobs``, ``generate``,
    ``yes_no_score``, ``label_logprobs``) on a ``VLMReranker`` built from the driver's
    hyper-parameters with no cache: only the driver reads and writes the cache.
    """

    def __init__(self, params: dict[str, Any], item_kind: str, device: str):
        vlm = VLMReranker(**{**params, "device": device, "engine": "local",
                             "cache_dir": None})
        vlm.item_kind_ = item_kind
        vlm.stats_ = {"n_model_calls": 0, "model_seconds": 0.0, "n_prompts": 0,
                      "n_descriptions": 0}
        vlm._loaded, vlm._cache = None, None
        vlm._model()  # once per actor
        self.vlm = vlm

    def __call__(self, payload: tuple[str, list[dict[str, Any]]]
                 ) -> tuple[list[dict[str, Any]], dict[str, float]]:
        mode, jobs = payload
        before = dict(self.vlm.stats_)
        results = self._yes_no(jobs) if mode == "yes-no" else self._describe(jobs)
        return results, {k: v - before[k] for k, v in self.vlm.stats_.items()}

    def _yes_no(self, jobs: list[dict[str, Any]]) -> list[dict[str, Any]]:
        vlm = self.vlm
        messages = [yes_no_messages(len(j["images"]) - 1, vlm.item_kind_) for j in jobs]
        values = vlm.yes_no_score(vlm.next_token_logprobs(messages,
                                                          [j["images"] for j in jobs]))
        return [{"id": j["id"], "value": float(v)} for j, v in zip(jobs, values, strict=True)]

    def _describe(self, jobs: list[dict[str, Any]]) -> list[dict[str, Any]]:
        vlm = self.vlm
        texts = [j["description"] for j in jobs]
        need = [k for k, t in enumerate(texts) if t is None]
        for start in range(0, len(need), vlm.batch_size):
            part = need[start : start + vlm.batch_size]
            hists = [jobs[k]["history"] for k in part]
            made = vlm.generate([describe_messages(len(h), vlm.item_kind_) for h in hists],
                                hists)
            vlm.stats_["n_descriptions"] += len(part)
            for k, t in zip(part, made, strict=True):
                texts[k] = t
        prompts = [(k, np.asarray(perm), paths) for k, j in enumerate(jobs)
                   for perm, paths in zip(j["perms"], j["orders"], strict=True)]
        totals = [np.zeros(len(j["perms"][0]) if j["perms"] else 0) for j in jobs]
        for start in range(0, len(prompts), vlm.batch_size):
            part = prompts[start : start + vlm.batch_size]
            lp = vlm.next_token_logprobs([choice_messages(texts[k], len(perm))
                                          for k, perm, _ in part],
                                         [paths for _, _, paths in part])
            for (k, perm, _), row in zip(part, lp, strict=True):
                totals[k][perm] += vlm.label_logprobs(row, len(perm))
        return [{"id": j["id"], "text": texts[k], "value": (totals[k] / vlm.n_orders).tolist()}
                for k, j in enumerate(jobs)]
