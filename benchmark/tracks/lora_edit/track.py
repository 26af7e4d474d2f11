"""The lora-edit track: edit a LoRA toward a user's taste in a latent weight space, render, judge.

Protocol (docs/lora-edit.md):

1. the split is the lora-rec ``leave-last-out`` split (the same cached split as ``gembench run``);
   ``train`` = its train + valid LoRA interactions restricted to the bank;
2. evaluated users: a seeded sample of ``n_users`` test users of that split; each edits
   ``loras_per_user`` bank LoRAs drawn (seeded) among those the user never used (train, valid or
   test);
3. bank: one (base model, layout) group of an indexed LoRA bank; latent space = PCA with
   ``n_components``; a step of size ``a`` moves a latent by ``a * scale`` in L2, where ``scale``
   is the bank's RMS latent distance to its mean (so steps are comparable across banks);
4. the original is the LoRA's own latent (decoded through the same PCA), so ``no-edit`` has
   gain 0 and fidelity 1 exactly; edits and originals are rendered and judged identically;
5. per (user, LoRA): gain, win, fidelity, weight distance; per user: their mean; one record per
   method with the default step's metrics and the whole curve (``gain@<step>`` ...) inside.

Renderer protocol: ``render(weights, layout=None) -> float32 (n, emb_dim)`` where ``weights`` is
either a float array (n, layout.dim) of canonical vectors with their :class:`Layout`, or a list
of ``{layer name: (up, down, alpha)}`` dicts (:func:`as_layers` turns vectors into those).
Judge protocol: ``score(user_ids, embeddings) -> float64 (n,)``, higher = preferred by the user.
"""

from __future__ import annotations

import dataclasses
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import pandas as pd

from benchmark.core.params import build
from benchmark.errors import DataError, NotApplicable
from benchmark.lora.bank import Layer, Layout, from_vector

TRACK = "lora-edit"


def _edit_methods() -> dict[str, str]:
    from benchmark.registry import METHODS

    return {n: spec.target for n, spec in METHODS.items() if TRACK in spec.tracks}


#: the registered editing methods (name -> "module:Class"), read from benchmark.registry
EDIT_METHODS: dict[str, str] = _edit_methods()
DEFAULT_STEPS = (0.25, 0.5, 1.0, 2.0)
DEFAULT_STEP = 1.0
CURVE_METRICS = ("gain", "win_rate", "fidelity", "distance")


class Renderer(Protocol):
    def render(self, weights: np.ndarray | Sequence[dict[str, Layer]],
               layout: Layout | None = None) -> np.ndarray: ...


class Judge(Protocol):
    def score(self, user_ids: Sequence[str] | np.ndarray, embeddings: np.ndarray) -> np.ndarray: ...


def as_layers(vectors: np.ndarray, layout: Layout) -> list[dict[str, Layer]]:
    """Canonical vectors -> one ``{name: (up, down, alpha)}`` dict per LoRA (for any renderer)."""
    return [from_vector(v, layout) for v in np.asarray(vectors, np.float32).reshape(-1, layout.dim)]


def as_state_dicts(vectors: np.ndarray, layout: Layout) -> list[dict[str, np.ndarray]]:
    """Canonical vectors -> kohya-keyed state dicts (``lora_<name>.lora_up.weight`` ...)."""
    return [{f"lora_{name}.{part}": value
             for name, (up, down, alpha) in layers.items()
             for part, value in (("lora_up.weight", up), ("lora_down.weight", down),
                                 ("alpha", np.asarray(alpha, np.float32)))}
            for layers in as_layers(vectors, layout)]


class StateDictRenderer:
    """Adapts a per-LoRA renderer (``render(state_dict) -> (d,)`` or (m, d) images, e.g.
    ``DiffusersRenderer``) to the track's batch protocol; several images are averaged."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner

    def render(self, weights: np.ndarray | Sequence[dict[str, Layer]],
               layout: Layout | None = None) -> np.ndarray:
        if isinstance(weights, np.ndarray):
            if layout is None:
                raise ValueError("canonical vectors need their layout")
            states = as_state_dicts(weights, layout)
        else:
            states = [{f"lora_{n}.{p}": v for n, (u, d, a) in w.items()
                       for p, v in (("lora_up.weight", u), ("lora_down.weight", d),
                                    ("alpha", np.asarray(a, np.float32)))} for w in weights]
        out = [np.asarray(self.inner.render(s), np.float32) for s in states]
        return np.stack([e.reshape(-1, e.shape[-1]).mean(0) for e in out])


@dataclass
class EditBank:
    """What an editing method may fit on: the bank's latents and observable side data.

    ``world`` (the synthetic truth) is set only on synthetic data; only oracles may read it.
    """

    lora_ids: pd.Index
    latents: np.ndarray  # (n, k) float32
    space: Any  # LatentSpace
    scale: float
    embeddings: np.ndarray | None = None  # (n, emb) content embeddings of the bank LoRAs
    renderer: Renderer | None = None
    world: Any = None

    def rows(self, lora_ids: Sequence[str] | np.ndarray) -> np.ndarray:
        rows = self.lora_ids.get_indexer(pd.Index(np.atleast_1d(np.asarray(lora_ids, object))))
        if (rows < 0).any():
            raise DataError(f"LoRA {np.atleast_1d(lora_ids)[rows < 0][0]!r} is not in the bank",
                            rule="edited LoRAs are in the bank group")
        return rows


class DirectionEditor:
    """Base of the editing baselines: ``edit = z + step * scale * direction(user, lora)``.

    ``fit(bank, train) -> self`` (train: :class:`benchmark.protocols.InteractionData` over the
    bank's LoRAs); ``edit(user_id(s), lora_id(s), step) -> latent(s)``; subclasses give unit
    directions (or override ``edit``).
    """

    name = "direction"

    def __init__(self, seed: int = 0) -> None:
        self.seed = seed

    def get_params(self) -> dict[str, Any]:
        return {"seed": self.seed}

    def fit(self, bank: EditBank, train: Any) -> DirectionEditor:
        self.bank_ = bank
        self.train_ = train
        return self

    def _user_rows(self, user_ids: np.ndarray) -> np.ndarray:
        return self.train_.user_ids.get_indexer(pd.Index(np.asarray(user_ids, dtype=object)))

    def directions(self, user_rows: np.ndarray, lora_rows: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def edit(self, user_id: str | Sequence[str], lora_id: str | Sequence[str],
             step: float) -> np.ndarray:
        single = np.ndim(user_id) == 0
        users = np.atleast_1d(np.asarray(user_id, dtype=object))
        lora_rows = self.bank_.rows(lora_id)
        z = self.bank_.latents[lora_rows].astype(np.float64)
        z = z + step * self.bank_.scale * self.directions(self._user_rows(users), lora_rows)
        return z[0] if single else z


def unit(x: np.ndarray) -> np.ndarray:
    """Rows scaled to norm 1 (zero rows stay zero)."""
    n = np.linalg.norm(x, axis=-1, keepdims=True)
    return np.divide(x, n, out=np.zeros_like(x, dtype=np.float64), where=n > 0)


def positive_means(matrix: Any, latents: np.ndarray) -> np.ndarray:
    """Mean latent of each user's used LoRAs: rows of ``D^-1 R Z`` (R: users x bank)."""
    counts = np.asarray(matrix.sum(axis=1)).ravel()
    sums = matrix @ latents
    return np.divide(sums, counts[:, None], out=np.zeros_like(sums, dtype=np.float64),
                     where=counts[:, None] > 0)


# the run -----------------------------------------------------------------------------------------
def resolve_edit_method(name: str) -> tuple[str, type]:
    """A registered editing method or ``package.module:Class`` -> (name, class)."""
    from benchmark.registry import resolve_method

    if name not in EDIT_METHODS and ":" not in name:
        raise KeyError(f"unknown editing method {name!r}; registered: {sorted(EDIT_METHODS)} "
                       "(or pass package.module:Class)")
    return resolve_method(name, track=TRACK)


def method_bank(bank: EditBank, name: str, cls: type) -> EditBank:
    """What method ``name`` may fit on: the bank without the truth (world, renderer) unless
    it is a registered reference row (``oracle-direction``)."""
    from benchmark.registry import is_reference

    if is_reference(name, cls):
        return bank
    return dataclasses.replace(bank, world=None, renderer=None)


def synthetic_bank(dataset: Any, lora_ids: Sequence[str], out: str | os.PathLike,
                   form: str = "rank1", progress: bool = True) -> Any:
    """Write (once) and index the synthetic LoRAs ``lora_ids`` under ``out``; the index."""
    import hashlib

    from benchmark.lora.bank import build_index, open_index
    from benchmark.lora.synthetic import GENERATOR_VERSION, SyntheticWorld

    text = "\n".join([*sorted(lora_ids), form, GENERATOR_VERSION])
    key = hashlib.sha256(text.encode()).hexdigest()[:12]
    from benchmark.core.names import safe_name, under_root

    name = safe_name(dataset.name, "data set name", path=Path(dataset.path) / "dataset.json")
    root = under_root(out, Path(out) / f"{name}-seed{int(dataset.meta.get('seed', 0))}-{key}")
    if (root / "index" / "index.json").is_file():
        return open_index(root / "index")
    SyntheticWorld(dataset).write_bank(root / "files", sorted(lora_ids), progress=progress)
    return build_index(root / "files", root / "index", form=form, progress=progress)


def _sample_targets(used: Any, users: np.ndarray, per_user: int, rng: np.random.Generator
                    ) -> tuple[np.ndarray, np.ndarray]:
    """(user position, bank row) pairs: ``per_user`` unused bank LoRAs per user, seeded."""
    keys = rng.random((len(users), used.shape[1]))
    keys[used[users].toarray() > 0] = np.inf
    rows = np.argsort(keys, axis=1, kind="stable")[:, :per_user]
    ok = np.take_along_axis(keys, rows, axis=1) < np.inf
    pos = np.repeat(np.arange(len(users)), per_user).reshape(rows.shape)
    return pos[ok], rows[ok]


def run_lora_edit(
    dataset: str | os.PathLike | Any = "synthetic-small",
    methods: Sequence[str] | None = None,
    steps: Sequence[float] = DEFAULT_STEPS,
    default_step: float = DEFAULT_STEP,
    results_dir: str | os.PathLike | None = "results",
    data_dir: str | os.PathLike = "data",
    bank: str | os.PathLike | None = None,
    base_model: str | None = None,
    n_components: int = 32,
    n_users: int = 200,
    loras_per_user: int = 2,
    bank_size: int = 2000,
    seed: int = 0,
    renderer: Renderer | None = None,
    judge: Judge | None = None,
    judge_name: str | None = None,
    encoder: str = "synthetic-clip",
    progress: bool = True,
    echo: Any = print,
) -> dict[str, Any]:
    """Run editing methods over ``steps``; write one record per method; return records + curve.

    ``bank``: an index folder (``gembench loras index``); default on synthetic data: the
    evaluated users' LoRAs plus a seeded sample up to ``bank_size``, written and indexed once
    under ``data_dir/lora-banks``. Non-synthetic data need ``bank``, ``renderer`` and ``judge``.
    ``judge_name`` names a judge other than the synthetic truth (e.g. a saved preference model,
    :class:`benchmark.judge.EmbeddingJudge`): its records get the protocol
    ``<split>-judge-<name>``, a table of their own.
    """
    import scipy.sparse as sp

    from benchmark.data.resolve import resolve_dataset
    from benchmark.data.store import Dataset
    from benchmark.lora.bank import open_index
    from benchmark.lora.metrics import (
        per_user_mean,
        preference_gain,
        render_fidelity,
        weight_distance,
        win_indicator,
    )
    from benchmark.lora.space import fit_space
    from benchmark.protocols import InteractionData
    from benchmark.ranking_data import track_data
    from benchmark.results import (
        make_record,
        method_figures,
        record_path,
        seeded_protocol,
        write_record,
    )
    from benchmark.splits import SplitConfig, prepare_split

    t_start = time.perf_counter()
    methods = list(methods or EDIT_METHODS)
    steps = sorted({float(s) for s in steps} | {float(default_step)})
    ds = dataset if isinstance(dataset, Dataset) else resolve_dataset(dataset, data_dir, seed,
                                                                      progress)
    split = prepare_split(ds, SplitConfig(seed=seed), data_dir, progress=progress)
    fit, relevant = track_data(split, "lora", "test")
    rng = np.random.default_rng([seed, 6])
    test_users = np.flatnonzero(relevant.getnnz(axis=1) > 0)
    eval_users = np.sort(rng.choice(test_users, size=min(n_users, len(test_users)),
                                    replace=False))
    used_all = (fit.matrix + relevant).tocsr()

    world = None
    if ds.has_truth:
        from benchmark.lora.synthetic import SyntheticJudge, SyntheticRenderer, SyntheticWorld

        world = SyntheticWorld(ds)
        renderer = renderer or SyntheticRenderer(world)
        judge = judge or SyntheticJudge(world)
    if renderer is None or judge is None:
        raise NotApplicable("lora-edit on non-synthetic data needs a renderer and a judge")
    if bank is None:
        if world is None:
            raise NotApplicable("lora-edit on non-synthetic data needs --bank (an index)")
        wanted = set(fit.item_ids[used_all[eval_users].indices])
        others = np.setdiff1d(np.asarray(fit.item_ids, dtype=object), np.array(sorted(wanted),
                              dtype=object))
        extra = max(0, bank_size - len(wanted))
        fill = rng.choice(others, size=min(extra, len(others)), replace=False)
        index = synthetic_bank(ds, sorted(wanted | set(fill)), Path(data_dir) / "lora-banks",
                               progress=progress)
    else:
        index = open_index(bank)
    group = index.largest_group(base_model)
    t_bank = time.perf_counter()
    space = fit_space(index, group, n_components, progress=progress)
    vectors = index.vectors(group)
    latents = space.transform_batches(vectors)
    layout = index.layout(group)
    bank_ids = pd.Index(index.ids(group), dtype=object)
    scale = float(np.sqrt(((latents - latents.mean(0)) ** 2).sum(1).mean()))
    embeddings = None
    if encoder in ds.encoders():
        rows = ds.ids("loras").get_indexer(bank_ids)
        if (rows >= 0).all():
            embeddings = np.asarray(ds.embeddings(encoder, "lora"))[rows]
    edit_bank = EditBank(bank_ids, latents, space, scale, embeddings, renderer, world)

    cols = fit.item_ids.get_indexer(bank_ids)
    keep = cols >= 0
    pick = sp.csr_matrix((np.ones(keep.sum()), (cols[keep], np.flatnonzero(keep))),
                         shape=(len(fit.item_ids), len(bank_ids)))
    train_matrix = (fit.matrix @ pick).tocsr()
    train = InteractionData(fit.user_ids, bank_ids, train_matrix, pd.DataFrame(), "lora")
    used_bank = (used_all @ pick).tocsr()
    pos, lora_rows = _sample_targets(used_bank, eval_users, loras_per_user, rng)
    pair_users = np.asarray(fit.user_ids[eval_users[pos]], dtype=object)
    pair_loras = np.asarray(bank_ids[lora_rows], dtype=object)
    x0 = space.inverse_transform(latents[lora_rows])
    e0 = renderer.render(x0, layout)
    j0 = judge.score(pair_users, e0)
    n_eval = len(eval_users)

    records, paths, rows_out = [], [], []
    for name in methods:
        display, cls = resolve_edit_method(name)
        method = build(cls, seed)
        try:
            t0 = time.perf_counter()
            method.fit(method_bank(edit_bank, display, cls), train)
            t1 = time.perf_counter()
        except NotApplicable as e:
            echo(f"skip {display}: {e}")
            continue
        per_user: dict[str, np.ndarray] = {}
        for step in steps:
            z = np.asarray(method.edit(pair_users, pair_loras, step), np.float64)
            x = space.inverse_transform(z)
            e = renderer.render(x, layout)
            j = judge.score(pair_users, e)
            pair = {"gain": preference_gain(j, j0), "win_rate": win_indicator(j, j0),
                    "fidelity": render_fidelity(e, e0), "distance": weight_distance(x, x0, layout)}
            for metric, values in pair.items():
                per_user[f"{metric}@{step:g}"] = per_user_mean(values, pos, n_eval)
        for metric in CURVE_METRICS:
            per_user[metric] = per_user[f"{metric}@{default_step:g}"]
        summary = {k: float(np.mean(v)) for k, v in per_user.items()}
        record = make_record(
            track=TRACK,
            dataset=ds.record_block(),
            split={"protocol": seeded_protocol(split.meta["protocol"], seed)
                   + (f"-judge-{judge_name}" if judge_name else ""),
                   "fingerprint": split.fingerprint,
                   "part": "test", "fit_on": "train+valid",
                   "interaction_kind": split.meta["tracks"]["lora-rec"]["interaction_kind"],
                   "config": split.meta.get("params")},
            method={"name": display, "class": f"{cls.__module__}:{cls.__qualname__}",
                    "params": method.get_params(), "tuned": False, "tuned_on": None},
            summary=summary, per_user=per_user,
            user_ids=list(fit.user_ids[eval_users]),
            counts={"n_users_evaluated": n_eval, "n_users_skipped": 0,
                    "n_edits": len(pos)},
            seed=seed,
            timing={"fit": t1 - t0, "evaluate": time.perf_counter() - t1},
            extra={"bank_size": float(len(bank_ids)), "n_components": float(space.components_
                   .shape[0]), "explained_variance": float(space.explained_variance_ratio_.sum()),
                   "step_scale": scale, "default_step": float(default_step),
                   **method_figures(method, warn=echo)},
        )
        record["steps"] = steps
        # what `gembench run --reproduce` needs to rebuild the same bank, users and edits
        record["edit_config"] = {"n_components": n_components, "n_users": n_users,
                                 "loras_per_user": loras_per_user, "bank_size": bank_size,
                                 "base_model": base_model, "encoder": encoder,
                                 "default_step": default_step,
                                 "synthetic_bank": bank is None}
        record["judge"] = judge_name or ("synthetic truth" if world is not None
                                         else type(judge).__name__)
        record["bank"] = {"path": str(index.path), "group": group, "form": index.form,
                          "base_model": index.groups[group]["base_model"],
                          "layout_key": layout.key}
        records.append(record)
        if results_dir is not None:
            paths.append(write_record(record, record_path(results_dir, record)))
        rows_out.append(display)
    timing = {"total": time.perf_counter() - t_start, "bank": t_bank - t_start}
    return {"records": records, "paths": paths, "curve": curve_frame(records),
            "explained_variance": float(space.explained_variance_ratio_.sum()),
            "timing": timing, "dataset": ds, "bank": index}


def curve_frame(records: Sequence[dict[str, Any]]) -> pd.DataFrame:
    """Gain-vs-fidelity curve of lora-edit records: one row per (method, step).

    Columns: method, step, then for each of gain, win_rate, fidelity, distance the mean and its
    bootstrap interval (``<metric>_low``, ``<metric>_high``).
    """
    rows = []
    for rec in records:
        if rec.get("track") != TRACK:
            continue
        for step in rec.get("steps", []):
            row: dict[str, Any] = {"method": rec["method"]["name"], "step": float(step)}
            for metric in CURVE_METRICS:
                key = f"{metric}@{float(step):g}"
                row[metric] = rec["metrics"].get(key, np.nan)
                low, high = rec["intervals"].get(key, [np.nan, np.nan])
                row[f"{metric}_low"], row[f"{metric}_high"] = low, high
            rows.append(row)
    cols = ["method", "step"] + [f"{m}{s}" for m in CURVE_METRICS for s in ("", "_low", "_high")]
    return pd.DataFrame(rows, columns=cols)
