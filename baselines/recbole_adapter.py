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


class RecBoleModel(RankingMethod):
    """A RecBole model by name (``recbole:BPR``, ``recbole:LightGCN``, ``recbole:SASRec``...)."""

    name = "recbole"
    #: tuned on the validation part like every baseline (`gembench tune`); small because each
    #: trial trains a torch model on 2 CPU cores
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
        config: dict[str, Any] | None = None,
        device: str = "cpu",
        seed: int = 0,
    ):
        self.model = model
        self.epochs = epochs
        self.learning_rate = learning_rate
        self.embedding_size = embedding_size
        self.train_batch_size = train_batch_size
        self.max_seq_length = max_seq_length
        self.config = config
        self.device = device
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
            cfg["inner_size"] = 4 * self.embedding_size
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
            with _quiet_in(tmp):
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
        with torch.no_grad():
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
    """The class ``recbole:<model>`` resolves to: RecBoleModel with ``model`` as its default.

    Its ``__init__`` signature shows the default, so ``get_params`` records the model and the
    runner's ``cls(seed=...)`` trains it; records name the importable ``RecBoleModel``.
    """
    base = inspect.signature(RecBoleModel.__init__)
    signature = base.replace(parameters=[
        p.replace(default=model) if p.name == "model" else p for p in base.parameters.values()
    ])

    def __init__(self: RecBoleModel, **kwargs: Any) -> None:
        RecBoleModel.__init__(self, **{"model": model, **kwargs})

    __init__.__signature__ = signature  # type: ignore[attr-defined]
    cls = type(f"RecBole{model}", (RecBoleModel,), {"name": f"recbole:{model}",
                                                     "__init__": __init__})
    cls.__qualname__ = RecBoleModel.__qualname__
    return cls
