"""Cross-check gembench's collaborative-filtering path against RecBole on MovieLens-100K.

    python -m benchmark.crosscheck_recbole [--ml100k ../shared/data/ml-100k] [--epochs 20]

One gembench split (temporal 80/10/10 per user by default) is written as RecBole
benchmark files (``ml-100k.{train,valid,test}.inter``, so RecBole does not re-split),
and for BPR and ItemKNN it prints recall@10 / ndcg@10 of

1. RecBole's own pipeline (the steps of ``recbole.quick_start.run_recbole``: fit on
   train, early stopping on valid, full-sort test with train + valid items masked);
2. gembench's metric code applied to the very top-10 lists RecBole's evaluation ranked
   -- these must agree with (1) to 1e-6 (same model, same lists);
3. gembench's engine running ``recbole:BPR`` / ``itemknn`` fitted on train (RecBole's
   protocol) and on train + valid (gembench's test protocol).

Differences between (1) and (3) come from training randomness (BPR) and from the
implementations (itemknn); docs/recbole.md explains them.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp

from benchmark.data.recbole import import_recbole
from benchmark.evaluate import evaluate_ranking, metrics_from_ranked
from benchmark.protocols import InteractionData, RankingMethod, SideInfo
from benchmark.ranking_data import track_data
from benchmark.splits import Split, SplitConfig, make_split

DEFAULT_ML100K = Path(__file__).resolve().parents[2] / "shared" / "data" / "ml-100k"
METRICS = ("recall@10", "ndcg@10")
NAME = "ml-100k"
#: RecBole maps a data set named "ml-100k" to its bundled example folder, whatever data_path says
RB_NAME = "ml-100k-split"


@dataclass
class Row:
    model: str
    source: str
    metrics: dict[str, float]
    note: str = ""


@dataclass
class CrossCheck:
    rows: list[Row] = field(default_factory=list)
    #: max |RecBole's reported metric - gembench's metric on RecBole's lists| per model
    list_agreement: dict[str, float] = field(default_factory=dict)
    n_users: int = 0
    n_items: int = 0
    split_counts: dict[str, int] = field(default_factory=dict)

    def table(self) -> str:
        head = f"{'model':8s} {'source':58s} {'recall@10':>10s} {'ndcg@10':>10s}  note"
        lines = [head, "-" * len(head)]
        for r in self.rows:
            lines.append(f"{r.model:8s} {r.source:58s} {r.metrics['recall@10']:10.6f} "
                         f"{r.metrics['ndcg@10']:10.6f}  {r.note}")
        return "\n".join(lines)


# --------------------------------------------------------------------------- data
def subsample_source(ml100k: Path, out: Path, max_users: int) -> Path:
    """A copy of the atomic files holding the first ``max_users`` users (by id) only."""
    out.mkdir(parents=True, exist_ok=True)
    inter = pd.read_csv(ml100k / f"{NAME}.inter", sep="\t", dtype=str)
    users = sorted(inter.iloc[:, 0].unique(), key=int)[:max_users]
    inter[inter.iloc[:, 0].isin(users)].to_csv(out / f"{NAME}.inter", sep="\t", index=False)
    if (ml100k / f"{NAME}.item").is_file():
        shutil.copy(ml100k / f"{NAME}.item", out / f"{NAME}.item")
    return out


def write_benchmark_files(split: Split, folder: Path) -> Path:
    """The split's parts as RecBole benchmark files, plus the catalogue as ``.item``."""
    folder.mkdir(parents=True, exist_ok=True)
    for part in ("train", "valid", "test"):
        frame = split.part(part, "lora")
        seconds = frame["timestamp"].to_numpy().astype("datetime64[s]").astype(np.int64)
        pd.DataFrame({"user_id:token": frame["user_id"].to_numpy(),
                      "item_id:token": frame["item_id"].to_numpy(),
                      "timestamp:float": seconds}).to_csv(
            folder / f"{RB_NAME}.{part}.inter", sep="\t", index=False)
    pd.DataFrame({"item_id:token": split.items("lora")}).to_csv(
        folder / f"{RB_NAME}.item", sep="\t", index=False)
    return folder


# --------------------------------------------------------------------------- RecBole
def run_recbole_pipeline(model: str, data_path: Path, epochs: int, seed: int,
                         extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """``run_recbole``'s steps on the benchmark files, keeping the top-10 lists RecBole ranked.

    Returns RecBole's test result and its lists as (user token, [item tokens]).
    """
    import baselines.recbole_compat  # noqa: F401  (before RecBole runs)

    # isort: split
    from recbole.config import Config
    from recbole.data import create_dataset, data_preparation
    from recbole.utils import get_model, get_trainer, init_seed

    from baselines.recbole_adapter import _quiet_in

    config_dict: dict[str, Any] = {
        "data_path": str(data_path),
        "benchmark_filename": ["train", "valid", "test"],
        "USER_ID_FIELD": "user_id", "ITEM_ID_FIELD": "item_id", "TIME_FIELD": "timestamp",
        "load_col": {"inter": ["user_id", "item_id", "timestamp"], "item": ["item_id"]},
        "eval_args": {"mode": "full", "order": "TO", "group_by": "user",
                      "split": {"RS": [0.8, 0.1, 0.1]}},  # split unused: benchmark files
        "metrics": ["Recall", "NDCG"], "topk": [10], "valid_metric": "NDCG@10",
        "metric_decimal_place": 12, "epochs": epochs, "seed": seed, "reproducibility": True,
        "show_progress": False, "gpu_id": "", "log_wandb": False,
        "checkpoint_dir": str(data_path / "checkpoints"),
        **(extra or {}),
    }
    with _quiet_in(data_path):
        config = Config(model=model, dataset=RB_NAME, config_dict=config_dict)
        init_seed(config["seed"], config["reproducibility"])
        dataset = create_dataset(config)
        train_data, valid_data, test_data = data_preparation(config, dataset)
        init_seed(config["seed"], config["reproducibility"])
        net = get_model(config["model"])(config, train_data._dataset).to(config["device"])
        trainer = get_trainer(config["MODEL_TYPE"], config["model"])(config, net)
        trainer.fit(train_data, valid_data, saved=True, show_progress=False)
        lists: list[tuple[np.ndarray, np.ndarray]] = []
        collect = trainer.eval_collector.eval_batch_collect

        def recording(scores, interaction, positive_u, positive_i):  # type: ignore[no-untyped-def]
            import torch

            _, top = torch.topk(scores, max(config["topk"]), dim=-1)  # what RecBole ranks
            lists.append((interaction[config["USER_ID_FIELD"]].cpu().numpy(),
                          top.cpu().numpy()))
            return collect(scores, interaction, positive_u, positive_i)

        trainer.eval_collector.eval_batch_collect = recording
        result = trainer.evaluate(test_data, load_best_model=True, show_progress=False)
        trainer.tensorboard.close()
    users = np.concatenate([u for u, _ in lists])
    top = np.concatenate([t for _, t in lists])
    return {
        "result": {k.lower(): float(v) for k, v in result.items()},
        "user_tokens": dataset.id2token(config["USER_ID_FIELD"], users),
        "item_tokens": dataset.id2token(config["ITEM_ID_FIELD"], top),
    }


def metrics_on_recbole_lists(run: dict[str, Any], fit: InteractionData,
                             relevant: sp.csr_matrix) -> dict[str, float]:
    """gembench's metric code on RecBole's ranked lists (tokens mapped to dense indices)."""
    users = fit.user_ids.get_indexer(np.asarray(run["user_tokens"], dtype=object))
    items = fit.item_ids.get_indexer(np.asarray(run["item_tokens"], dtype=object).ravel())
    if (users < 0).any() or (items < 0).any():
        raise ValueError("RecBole ranked ids that are not in gembench's split")
    ranked = items.reshape(len(users), -1)
    evaluated = np.flatnonzero(np.diff(relevant.indptr) > 0)
    if sorted(users.tolist()) != evaluated.tolist():
        raise ValueError(f"RecBole evaluated {len(users)} users, gembench {len(evaluated)}")
    per_user, _ = metrics_from_ranked(ranked, relevant[users], list(METRICS))
    return {name: float(per_user[name].mean()) for name in METRICS}


# --------------------------------------------------------------------------- gembench
def gembench_metrics(method: RankingMethod, fit: InteractionData, exclude: sp.csr_matrix,
                     relevant: sp.csr_matrix) -> dict[str, float]:
    method.fit(fit, SideInfo(dataset=None, item_kind="lora"))
    evaluation = evaluate_ranking(method, exclude, relevant, METRICS, progress=False)
    return {name: evaluation.summary[name] for name in METRICS}


def crosscheck(ml100k: Path = DEFAULT_ML100K, *, protocol: str = "temporal",
               test_ratio: float = 0.1, valid_ratio: float = 0.1, epochs: int = 20,
               seed: int = 0, max_users: int | None = None,
               workdir: Path | None = None) -> CrossCheck:
    """Build the split, run both sides, return the rows (see the module docstring)."""
    from baselines.itemknn import ItemKNN
    from baselines.recbole_adapter import RecBoleModel

    own_tmp = workdir is None
    work = Path(tempfile.mkdtemp(prefix="gembench-crosscheck-")) if own_tmp else Path(workdir)
    try:
        src = subsample_source(ml100k, work / "src" / NAME, max_users) if max_users else ml100k
        ds = import_recbole(src, work / "gembench" / NAME, name=NAME, progress=False)
        split = make_split(ds, SplitConfig(protocol=protocol, tracks=("lora-rec",),
                                           test_ratio=test_ratio, valid_ratio=valid_ratio,
                                           seed=seed))
        fit_tv, relevant = track_data(split, "lora", "test")  # fit = train + valid
        fit_train, _ = track_data(split, "lora", "valid")  # fit = train
        exclude = fit_tv.matrix  # RecBole's test masks train + valid items too
        rb_path = write_benchmark_files(split, work / "recbole" / RB_NAME).parent
        out = CrossCheck(n_users=fit_tv.n_users, n_items=fit_tv.n_items,
                         split_counts=dict(split.meta["counts"]))
        cases = [
            ("BPR", {}, lambda: RecBoleModel("BPR", epochs=epochs, seed=seed), "recbole:BPR"),
            ("ItemKNN", {"k": 100, "shrink": 0.0}, lambda: ItemKNN(k=100, shrink=0.0),
             "itemknn"),
        ]
        for model, extra, make, gb_name in cases:
            run = run_recbole_pipeline(model, rb_path, epochs, seed, extra)
            reported = {m: run["result"][m] for m in METRICS}
            on_lists = metrics_on_recbole_lists(run, fit_tv, relevant)
            diff = max(abs(reported[m] - on_lists[m]) for m in METRICS)
            out.list_agreement[model] = diff
            out.rows += [
                Row(model, "RecBole run_recbole (fit train, early stop on valid)", reported),
                Row(model, "gembench metrics on RecBole's own top-10 lists", on_lists,
                    f"max |diff| {diff:.1e}"),
            ]
            on_train = gembench_metrics(make(), fit_train, exclude, relevant)
            delta = max(abs(reported[m] - on_train[m]) for m in METRICS)
            out.rows.append(Row(model, f"gembench {gb_name} (fit train, RecBole's protocol)",
                                on_train, f"max |diff| vs RecBole {delta:.4f}"))
            out.rows.append(Row(model, f"gembench {gb_name} (fit train+valid, gembench's)",
                                gembench_metrics(make(), fit_tv, exclude, relevant)))
        return out
    finally:
        if own_tmp:
            shutil.rmtree(work, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--ml100k", type=Path, default=DEFAULT_ML100K,
                        help="folder with ml-100k.inter (RecBole atomic files)")
    parser.add_argument("--protocol", default="temporal", choices=("temporal", "random"))
    parser.add_argument("--test-ratio", type=float, default=0.1)
    parser.add_argument("--valid-ratio", type=float, default=0.1)
    parser.add_argument("--epochs", type=int, default=20, help="BPR epochs (both sides)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--max-users", type=int, default=None, help="subsample (first N users)")
    args = parser.parse_args(argv)
    if not (args.ml100k / f"{NAME}.inter").is_file():
        parser.error(f"{args.ml100k / (NAME + '.inter')} not found (pass --ml100k)")
    result = crosscheck(args.ml100k, protocol=args.protocol, test_ratio=args.test_ratio,
                        valid_ratio=args.valid_ratio, epochs=args.epochs, seed=args.seed,
                        max_users=args.max_users)
    print(f"MovieLens-100K: {result.n_users} users, {result.n_items} items, split "
          f"{args.protocol} {result.split_counts}")
    print(result.table())
    worst = max(result.list_agreement.values())
    print(f"same model, same top-10 lists: RecBole and gembench metrics agree to {worst:.1e}"
          + (" (OK, <= 1e-6)" if worst <= 1e-6 else " (MISMATCH > 1e-6)"))
    return 0 if worst <= 1e-6 else 1


if __name__ == "__main__":
    raise SystemExit(main())
