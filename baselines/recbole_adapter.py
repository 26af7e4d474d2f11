"""``recbole:<Model>``: any RecBole general or sequential model, scored by gembench's engine.

RecBole trains (its own Dataset, sampler, dataloader and ``Trainer.fit``, seeded);
gembench ranks: ``score(user_idx)`` calls the model's ``full_sort_predict`` and the
engine masks training items and takes the top-K, exactly as for every other method.

How the fit data reach RecBole: they are written as atomic files in a temporary
folder (``gb.inter`` with the fit rows, ``gb.item`` with the whole catalogue, so
every catalogue item has a RecBole id) with tokens = gembench's dense indices.
RecBole is not allowed to split them: the loaded data set is used whole as the
training set (``Dataset._change_feat_format``, which for sequential models runs
RecBole's own next-item augmentation) -- what ``benchmark_filename`` with a single
part would do, without needing pre-augmented sequence files. No validation slice
is used: ``Trainer.fit`` gets no ``valid_data``, so it trains the given number of
epochs and checkpoints each one into the temporary folder.

torch and RecBole are imported inside ``fit`` only (``gembench --help`` stays fast).
"""

from __future__ import annotations

import contextlib
import inspect
import logging
import os
import shutil
import sys
import tempfile
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from benchmark.protocols import InteractionData, RankingMethod, SideInfo

#: names gembench accepts for RecBole's spelling (the papers say Mult-VAE / Mult-DAE)
ALIASES = {"MultVAE": "MultiVAE", "MultDAE": "MultiDAE"}
#: the config key that carries ``embedding_size`` for models that name it differently
EMBEDDING_KEYS = {
    "MultiVAE": ("latent_dimension",),
    "MultiDAE": ("latent_dimension",),
    "SASRec": ("hidden_size",),
    "BERT4Rec": ("hidden_size",),
    "GRU4Rec": ("embedding_size", "hidden_size"),
}
DATASET = "gb"


@contextlib.contextmanager
def _quiet_in(folder: Path) -> Iterator[None]:
    """Run RecBole with ``folder`` as working directory (its Trainer writes ``log_tensorboard/``
    under the cwd), CUDA_VISIBLE_DEVICES restored afterwards (its Config sets it), an empty
    command line (its Config reads ``--key=value`` from sys.argv, gembench's own included),
    the root logger at WARNING or above (RecBole logs each step at INFO there) and without
    the pandas / torch deprecation warnings its code triggers."""
    cwd, cuda, argv = os.getcwd(), os.environ.get("CUDA_VISIBLE_DEVICES"), sys.argv
    root = logging.getLogger()  # RecBole logs every step at INFO on the root logger
    level = root.level
    os.chdir(folder)
    sys.argv = argv[:1]
    root.setLevel(max(level, logging.WARNING))
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            warnings.filterwarnings("ignore", "torch.sparse.SparseTensor", UserWarning)
            yield
    finally:
        os.chdir(cwd)
        sys.argv = argv
        root.setLevel(level)
        if cuda is None:
            os.environ.pop("CUDA_VISIBLE_DEVICES", None)
        else:
            os.environ["CUDA_VISIBLE_DEVICES"] = cuda


@contextlib.contextmanager
def _torch_threads(n: int | None) -> Iterator[None]:
    """torch's intra-op thread count set to ``n`` for the block (None: left alone), then restored.

    Why: on a loaded 2-core machine torch's OpenMP threads wait on each other; with one thread
    BPR and LightGCN fitted 3x faster there, with identical results (docs/recbole.md)."""
    import torch

    before = torch.get_num_threads()
    if n is not None:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def write_atomic(fit: InteractionData, folder: Path, name: str = DATASET) -> Path:
    """Write ``fit`` as RecBole atomic files ``name.inter`` / ``name.item`` (tokens = dense ids)."""
    folder = folder / name
    folder.mkdir(parents=True, exist_ok=True)
    frame = fit.frame
    seconds = frame["timestamp"].to_numpy().astype("datetime64[s]").astype(np.int64)
    lines = np.char.add(
        np.char.add(np.char.add(frame["user_idx"].to_numpy().astype(str), "\t"),
                    np.char.add(frame["item_idx"].to_numpy().astype(str), "\t")),
        seconds.astype(str),
    )
    (folder / f"{name}.inter").write_text(
        "user_id:token\titem_id:token\ttimestamp:float\n" + "".join(f"{x}\n" for x in lines)
    )
    (folder / f"{name}.item").write_text(
        "item_id:token\n" + "".join(f"{i}\n" for i in range(fit.n_items))
    )
    return folder


#: Per-model defaults that differ from the class's, so that the four listed models fit
#: `make run`'s time budget on 2 CPU cores without crippling them (measured timings and the
#: reasons are in docs/recbole.md). SASRec: one ReLU block with one head (Kang & McAuley's
#: SASRec uses ReLU), a 64-wide feed-forward layer, the last 20 items, and BPR loss on one
#: sampled negative instead of a softmax over all 8,000 LoRAs (RecBole's CE default).
#: LightGCN and BPR: 8192-row batches (fewer graph propagations / optimizer steps per epoch).
#: MultVAE: Liang et al.'s 500-user batches (RecBole's 2048 gives 2 steps per epoch here) and
#: a 200-wide encoder layer (RecBole's 600 is ~3x the arithmetic per epoch).
MODEL_DEFAULTS: dict[str, dict[str, Any]] = {
    "BPR": {"train_batch_size": 8192, "learning_rate": 1e-2, "epochs": 20},
    "LightGCN": {"train_batch_size": 8192, "learning_rate": 1e-2, "epochs": 20},
    "MultiVAE": {"train_batch_size": 500, "inner_size": 200, "epochs": 30},
    "SASRec": {"max_seq_length": 20, "n_layers": 1, "n_heads": 1, "inner_size": 64,
               "hidden_act": "relu", "loss_type": "BPR", "epochs": 2},
}
#: Per-model search spaces and budgets for `gembench tune` (validation part only). The epoch
#: ranges are capped so that whatever the search picks fits `make run` (docs/recbole.md).
MODEL_SPACES: dict[str, tuple[dict[str, list[Any]], int]] = {
    "BPR": ({"epochs": [20, 50], "learning_rate": [3e-3, 1e-2, 3e-2]}, 6),
    "LightGCN": ({"epochs": [10, 20, 40], "learning_rate": [3e-3, 1e-2, 3e-2]}, 6),
    "MultiVAE": ({"epochs": [15, 30], "learning_rate": [1e-3, 2e-3, 3e-3, 1e-2]}, 6),
    "SASRec": ({"epochs": [1, 2, 3], "learning_rate": [1e-3, 3e-3, 1e-2]}, 5),
}


class RecBoleModel(RankingMethod):
    """A RecBole model by name (``recbole:BPR``, ``recbole:LightGCN``, ``recbole:SASRec``...).

    ``threads`` caps torch's intra-op threads while RecBole trains and while scoring (None:
    torch's default, one per core); see ``_torch_threads``. ``n_layers``, ``n_heads``,
    ``inner_size``, ``hidden_act`` and ``loss_type`` are passed to RecBole only when set (None
    keeps RecBole's default for the model); ``inner_size`` is SASRec / BERT4Rec's feed-forward
    width (None: 4 x ``embedding_size``) and MultVAE / MultDAE's encoder layer
    (``mlp_hidden_size = [inner_size]``).
    """

    name = "recbole"
    #: tuned on the validation part like every baseline (`gembench tune`); small because each
    #: trial trains a torch model on 2 CPU cores (the listed models have their own: MODEL_SPACES)
    search_space = {"epochs": [10, 20, 40], "learning_rate": [1e-3, 3e-3, 1e-2]}
    default_budget = 4

    def __init__(
        self,
        model: str = "BPR",
        epochs: int = 10,
        learning_rate: float = 1e-3,
        embedding_size: int = 64,
        train_batch_size: int = 2048,
        max_seq_length: int = 50,
        n_layers: int | None = None,
        n_heads: int | None = None,
        inner_size: int | None = None,
        hidden_act: str | None = None,
        loss_type: str | None = None,
        config: dict[str, Any] | None = None,
        device: str = "cpu",
        threads: int | None = 1,
        seed: int = 0,
    ):
        self.model = model
        self.epochs = epochs
        self.learning_rate = learning_rate
        self.embedding_size = embedding_size
        self.train_batch_size = train_batch_size
        self.max_seq_length = max_seq_length
        self.n_layers = n_layers
        self.n_heads = n_heads
        self.inner_size = inner_size
        self.hidden_act = hidden_act
        self.loss_type = loss_type
        self.config = config
        self.device = device
        self.threads = threads
        self.seed = seed

    # ------------------------------------------------------------------ configuration
    def recbole_config(self, data_path: Path) -> dict[str, Any]:
        """The config dict handed to RecBole's ``Config`` (our parameters + fixed plumbing)."""
        from recbole.utils import ModelType, get_model

        model = ALIASES.get(self.model, self.model)
        model_class = get_model(model)
        sequential = model_class.type == ModelType.SEQUENTIAL
        cfg: dict[str, Any] = {
            "data_path": str(data_path),
            "checkpoint_dir": str(data_path / "checkpoints"),
            "USER_ID_FIELD": "user_id",
            "ITEM_ID_FIELD": "item_id",
            "TIME_FIELD": "timestamp",
            "load_col": {"inter": ["user_id", "item_id", "timestamp"], "item": ["item_id"]},
            "epochs": self.epochs,
            "learning_rate": self.learning_rate,
            "train_batch_size": self.train_batch_size,
            "MAX_ITEM_LIST_LENGTH": self.max_seq_length,
            "seed": self.seed,
            "reproducibility": True,
            "show_progress": False,
            "gpu_id": "" if self.device == "cpu" else "0",
            "log_wandb": False,
        }
        for key in EMBEDDING_KEYS.get(model, ("embedding_size",)):
            cfg[key] = self.embedding_size
        if model in ("SASRec", "BERT4Rec"):
            cfg["inner_size"] = self.inner_size or 4 * self.embedding_size
        elif model in ("MultiVAE", "MultiDAE") and self.inner_size is not None:
            cfg["mlp_hidden_size"] = [self.inner_size]
        for key in ("n_layers", "n_heads", "hidden_act", "loss_type"):
            if getattr(self, key) is not None:
                cfg[key] = getattr(self, key)
        cfg.update(self.config or {})
        if sequential and cfg.get("loss_type", "CE") == "CE":
            cfg["train_neg_sample_args"] = None  # RecBole refuses negative sampling with CE
        return cfg

    # ------------------------------------------------------------------ fit / score
    def fit(self, train: InteractionData, side: SideInfo) -> RecBoleModel:
        import baselines.recbole_compat  # noqa: F401  (before RecBole runs)

        # isort: split
        from recbole.config import Config
        from recbole.data import create_dataset
        from recbole.data.utils import create_samplers, get_dataloader
        from recbole.utils import ModelType, get_model, get_trainer, init_seed

        model_name = ALIASES.get(self.model, self.model)
        tmp = Path(tempfile.mkdtemp(prefix="gembench-recbole-"))
        try:
            write_atomic(train, tmp)
            with _quiet_in(tmp), _torch_threads(self.threads):
                config = Config(model=model_name, dataset=DATASET,
                                config_dict=self.recbole_config(tmp))
                init_seed(config["seed"], config["reproducibility"])
                dataset = create_dataset(config)
                # the whole file is the training set (see the module docstring)
                dataset._change_feat_format()
                built = [dataset, dataset, dataset]
                train_sampler, _, _ = create_samplers(config, dataset, built)
                train_data = get_dataloader(config, "train")(
                    config, dataset, train_sampler, shuffle=config["shuffle"]
                )
                init_seed(config["seed"], config["reproducibility"])
                model = get_model(model_name)(config, train_data._dataset).to(config["device"])
                trainer = get_trainer(config["MODEL_TYPE"], model_name)(config, model)
                trainer.fit(train_data, valid_data=None, saved=True, show_progress=False)
                # reload the last checkpoint the way RecBole's evaluate() does
                import recbole.trainer.trainer as trainer_module

                checkpoint = trainer_module.torch.load(trainer.saved_model_file,
                                                       map_location=config["device"])
                model.load_state_dict(checkpoint["state_dict"])
                model.load_other_parameter(checkpoint.get("other_parameter"))
                trainer.tensorboard.close()
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        model.eval()
        self.model_ = model
        self.torch_device_ = config["device"]
        self.sequential_ = config["MODEL_TYPE"] == ModelType.SEQUENTIAL
        self.n_recbole_items_ = dataset.item_num
        uid, iid = config["USER_ID_FIELD"], config["ITEM_ID_FIELD"]
        user_tok = dataset.field2token_id[uid]
        item_tok = dataset.field2token_id[iid]
        # gembench dense index -> RecBole internal id (0 = RecBole's [PAD]; -1 = unknown user)
        self.item_map_ = np.array([item_tok[str(i)] for i in range(train.n_items)], dtype=np.int64)
        self.user_map_ = np.array([user_tok.get(str(u), -1) for u in range(train.n_users)],
                                  dtype=np.int64)
        self.uid_field_ = uid
        if self.sequential_:
            self.item_seq_field_ = model.ITEM_SEQ
            self.item_seq_len_field_ = model.ITEM_SEQ_LEN
            self.sequences_ = self._sequences(train, config["MAX_ITEM_LIST_LENGTH"])
        return self

    def _sequences(self, train: InteractionData, max_len: int) -> tuple[np.ndarray, np.ndarray]:
        """Each user's last ``max_len`` fit items in time order, as RecBole ids (left-aligned,
        0-padded like RecBole's augmented ``item_id_list``) and their lengths."""
        users = train.frame["user_idx"].to_numpy()
        items = self.item_map_[train.frame["item_idx"].to_numpy()]
        counts = np.bincount(users, minlength=train.n_users)
        starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
        position = np.arange(len(users)) - starts[users]  # frame is sorted by user, then time
        keep_from = np.maximum(counts - max_len, 0)
        keep = position >= keep_from[users]
        column = position[keep] - keep_from[users[keep]]
        seq = np.zeros((train.n_users, max_len), dtype=np.int64)
        seq[users[keep], column] = items[keep]
        return seq, np.minimum(counts, max_len)

    def score(self, user_idx: np.ndarray, batch_size: int = 1024) -> np.ndarray:
        import torch
        from recbole.data.interaction import Interaction

        user_idx = np.asarray(user_idx, dtype=np.int64)
        out = np.zeros((len(user_idx), len(self.item_map_)), dtype=np.float32)
        if self.sequential_:
            known = self.sequences_[1][user_idx] > 0
        else:
            known = self.user_map_[user_idx] >= 0
        rows = np.flatnonzero(known)  # users RecBole never saw keep a constant 0 row
        with torch.no_grad(), _torch_threads(self.threads):
            for start in range(0, len(rows), batch_size):
                part = rows[start : start + batch_size]
                users = user_idx[part]
                if self.sequential_:
                    fields = {
                        self.item_seq_field_: torch.from_numpy(self.sequences_[0][users]),
                        self.item_seq_len_field_: torch.from_numpy(self.sequences_[1][users]),
                    }
                else:
                    fields = {self.uid_field_: torch.from_numpy(self.user_map_[users])}
                batch = Interaction(fields).to(self.torch_device_)
                scores = self.model_.full_sort_predict(batch).view(len(part), -1)
                columns = torch.from_numpy(self.item_map_).to(scores.device)
                out[part] = scores[:, columns].float().cpu().numpy()
        return out


def for_model(model: str) -> type[RecBoleModel]:
    """The class ``recbole:<model>`` resolves to: RecBoleModel with ``model`` (and the model's
    MODEL_DEFAULTS) as its defaults, and the model's MODEL_SPACES entry as its search space.

    Its ``__init__`` signature shows the defaults, so ``get_params`` records them and the
    runner's ``cls(seed=...)`` trains it; records name the importable ``RecBoleModel``.
    """
    canonical = ALIASES.get(model, model)
    defaults = {"model": model, **MODEL_DEFAULTS.get(canonical, {})}
    base = inspect.signature(RecBoleModel.__init__)
    signature = base.replace(parameters=[
        p.replace(default=defaults[p.name]) if p.name in defaults else p
        for p in base.parameters.values()
    ])

    def __init__(self: RecBoleModel, **kwargs: Any) -> None:
        RecBoleModel.__init__(self, **{**defaults, **kwargs})

    __init__.__signature__ = signature  # type: ignore[attr-defined]
    attrs: dict[str, Any] = {"name": f"recbole:{model}", "__init__": __init__}
    if canonical in MODEL_SPACES:
        attrs["search_space"], attrs["default_budget"] = MODEL_SPACES[canonical]
    cls = type(f"RecBole{model}", (RecBoleModel,), attrs)
    cls.__qualname__ = RecBoleModel.__qualname__
    return cls
