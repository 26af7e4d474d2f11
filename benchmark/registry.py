"""Registered data sets, tracks and methods, by name.

Methods are registered as ``"module:Class"`` strings and imported on use, so
listing them (and ``gembench --help``) never imports torch or RecBole. Third
parties add methods through the ``gembench.methods`` entry-point group or pass
``--method package.module:Class`` directly.
"""

from __future__ import annotations

import importlib
import inspect
import os
from dataclasses import dataclass
from importlib.metadata import entry_points
from typing import TYPE_CHECKING

from benchmark.tasks import TRACKS

if TYPE_CHECKING:
    from benchmark.protocols import RankingMethod


@dataclass(frozen=True)
class MethodSpec:
    name: str
    target: str  # "module:Class"
    tracks: tuple[str, ...]
    summary: str
    default: bool = True  # run by `gembench run` when no --methods is given
    #: (track, "module:Class") pairs where one name means a different class per track
    #: (``oracle``: the synthetic truth ranks items and also judges pairs)
    track_targets: tuple[tuple[str, str], ...] = ()
    #: tracks / split protocols it runs on when no --methods is given (None: all of ``tracks``
    #: / every protocol); lets a method cheap enough for one track's default run skip others
    default_tracks: tuple[str, ...] | None = None
    default_protocols: tuple[str, ...] | None = None
    #: a reference row (``oracle``): its training view carries the synthetic truth. Only
    #: built-ins are references; submitted code never sees the truth (benchmark.views)
    reference: bool = False

    def runs_by_default(self, track: str, protocol: str | None = None) -> bool:
        """Whether `gembench run` without --methods runs it on ``track`` (and ``protocol``)."""
        tracks = self.tracks if self.default_tracks is None else self.default_tracks
        protocol_ok = (protocol is None or self.default_protocols is None
                       or protocol in self.default_protocols)
        return self.default and track in tracks and track in self.tracks and protocol_ok

    def target_for(self, track: str | None) -> str:
        return dict(self.track_targets).get(track, self.target) if track else self.target


METHODS: dict[str, MethodSpec] = {
    spec.name: spec
    for spec in [
        MethodSpec("random", "baselines.random:RandomRanker", ("lora-rec", "image-rec"),
                   "uniform random scores (seeded)"),
        MethodSpec("popularity", "baselines.popularity:Popularity", ("lora-rec", "image-rec"),
                   "items by training interaction count"),
        MethodSpec("itemknn", "baselines.itemknn:ItemKNN", ("lora-rec", "image-rec"),
                   "item-based kNN, cosine with shrinkage"),
        MethodSpec("userknn", "baselines.userknn:UserKNN", ("lora-rec", "image-rec"),
                   "user-based kNN, cosine with shrinkage"),
        MethodSpec("ease", "baselines.ease:EASE", ("lora-rec", "image-rec"),
                   "EASE closed-form item autoencoder (items capped by max_items)"),
        MethodSpec("als", "baselines.als:ALS", ("lora-rec", "image-rec"),
                   "implicit-feedback ALS matrix factorisation (implicit)"),
        MethodSpec("bpr", "baselines.bpr:BPR", ("lora-rec", "image-rec"),
                   "BPR matrix factorisation (implicit)"),
        MethodSpec("lmf", "baselines.lmf:LMF", ("lora-rec", "image-rec"),
                   "logistic matrix factorisation (implicit)"),
        MethodSpec("clip-mean", "baselines.clip_mean:ClipMean", ("lora-rec", "image-rec"),
                   "content: mean embedding of the user's history"),
        MethodSpec("clip-recent", "baselines.clip_recent:ClipRecent", ("lora-rec", "image-rec"),
                   "content: recency-weighted profile"),
        MethodSpec("clip-multi", "baselines.clip_multi:ClipMulti", ("lora-rec", "image-rec"),
                   "content: multi-interest profile (per-user k-means)"),
        MethodSpec("clip-text", "baselines.clip_text:ClipText", ("lora-rec", "image-rec"),
                   "content: the user's own prompts as text queries (faiss retrieval)"),
        MethodSpec("two-tower", "baselines.two_tower:TwoTower", ("lora-rec", "image-rec"),
                   "content: trained user and item towers over embeddings (faiss retrieval)",
                   default=False),  # opt-in: 16-27 s per fit on an idle 2-core machine
        MethodSpec("hybrid", "baselines.hybrid:Hybrid", ("lora-rec", "image-rec"),
                   "log(1 + CF score) + beta * content score, tuned"),
        MethodSpec("oracle", "baselines.oracle:Oracle", ("lora-rec", "image-rec", "preference"),
                   "the synthetic world's true utility (synthetic data only)",
                   track_targets=(("preference", "baselines.pref_oracle:PreferenceOracle"),),
                   reference=True),
        # preference track: score(user_ids, image_ids) -> utility; pairs compare scores
        MethodSpec("global-reward", "baselines.pref_global:GlobalReward", ("preference",),
                   "one Bradley-Terry reward head on image embeddings for every user"),
        MethodSpec("user-embedding", "baselines.pref_user:UserEmbedding", ("preference",),
                   "global head plus a per-user vector (Bradley-Terry)"),
        MethodSpec("history-attention", "baselines.pref_history:HistoryAttention",
                   ("preference",), "attention over the user's liked/disliked history plus a "
                   "global head (torch; no per-user parameters)"),
        MethodSpec("preference-tokens", "baselines.pref_tokens:PreferenceTokens",
                   ("preference",), "users as mixtures of 10 learnable preference tokens, "
                   "contrastive loss (torch)"),
        MethodSpec("clip-score", "baselines.pref_clip_score:ClipScore", ("preference",),
                   "zero-shot: cosine of image and prompt embeddings (needs text embeddings)",
                   default=False),
        MethodSpec("aesthetic", "baselines.pref_aesthetic:AestheticPredictor", ("preference",),
                   "LAION-style aesthetic MLP on CLIP image embeddings (local weights file)",
                   default=False),
        MethodSpec("vlm-rerank", "baselines.vlm_rerank:VLMReranker", ("lora-rec", "image-rec"),
                   "a VLM reranks a first stage's top-N (needs images and weights)",
                   default=False),
        # lora-edit track: fit(bank, train) -> self; edit(user, lora, step) -> latent
        *(MethodSpec(name, target, ("lora-edit",), summary) for name, target, summary in (
            ("no-edit", "baselines.edit_none:NoEdit", "the unedited LoRA (gain 0 by design)"),
            ("random-direction", "baselines.edit_random:RandomDirection",
             "a random latent direction, same step size"),
            ("global-direction", "baselines.edit_global:GlobalDirection",
             "direction separating used LoRAs from the bank, for everybody"),
            ("user-direction", "baselines.edit_user:UserDirection",
             "per-user linear discriminant in the PCA space (ImageGem / weights2weights)"),
            ("judge-gradient", "baselines.edit_judge:JudgeGradient",
             "trust-region ascent on a fitted preference model of the user"),
            ("oracle-direction", "baselines.edit_oracle:OracleDirection",
             "the user's true taste direction (synthetic data only)"))
          if name != "oracle-direction"),
        MethodSpec("oracle-direction", "baselines.edit_oracle:OracleDirection", ("lora-edit",),
                   "the user's true taste direction (synthetic data only)", reference=True),
        # any RecBole model runs as recbole:<Model>; these four are tested (docs/recbole.md).
        # By default on lora-rec with the leave-last-out split only: their tuned configurations
        # fit make run's time budget there; on image-rec they are opt-in (--methods), and on
        # the cold-start split every test item is one they never trained (docs/recbole.md)
        *(MethodSpec(f"recbole:{model}", "baselines.recbole_adapter:RecBoleModel",
                     ("lora-rec", "image-rec"), f"RecBole's {model}, scored by the engine",
                     default_tracks=("lora-rec",), default_protocols=("leave-last-out",))
          for model in ("BPR", "LightGCN", "MultVAE", "SASRec")),
    ]
}

#: the module that runs any RecBole model as ``recbole:<Model>``
RECBOLE_ADAPTER = "baselines.recbole_adapter"

#: data sets that `gembench run --dataset NAME` can build by itself
DATASETS: dict[str, str] = {
    "synthetic-tiny": "seeded synthetic world, tiny scale (tests)",
    "synthetic-small": "seeded synthetic world, small scale (the default main job)",
    "synthetic-full": "seeded synthetic world at ImageGem scale (57K users, 242K LoRAs, 5M images)",
}

#: data sources that `gembench data import --source NAME` converts into the schema
SOURCES: dict[str, str] = {
    "imagegem": "the ImageGem release (ImageGem-images + ImageGem-models tables)",
    "recbole": "RecBole atomic files (.inter, .item, .user), e.g. MovieLens-100K",
    "pamela": "PAMELA personal ratings (bethgelab/PAMELA annotations/*.json)",
    "learn-user-pref": "Pick-a-Pic-derived user preferences of arXiv 2508.08220 (pickled "
                       "pandas; needs --allow-pickle once)",
}


class NameCollision(KeyError):
    """A submitted method takes a built-in's name (it would overwrite its records)."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


def _entry_point_methods() -> dict[str, MethodSpec]:
    found = {}
    for ep in entry_points(group="gembench.methods"):
        if is_builtin_name(ep.name):
            raise NameCollision(
                f"entry point {ep.name!r} ({ep.value}) in group gembench.methods takes a "
                "built-in method's name; rename the entry point (records are filed by name)")
        found[ep.name] = MethodSpec(ep.name, ep.value, tuple(TRACKS), f"entry point {ep.value}",
                                    default=False)
    return found


def all_methods() -> dict[str, MethodSpec]:
    return {**METHODS, **_entry_point_methods()}


def is_builtin_name(name: str) -> bool:
    """Whether ``name`` is a built-in method's (records and rows under it are the built-in's)."""
    return name in METHODS or name.startswith("recbole:")


def is_reference(name: str, cls: type) -> bool:
    """Whether the method ``name`` resolved to ``cls`` is a registered reference row.

    True only for a built-in flagged ``reference`` whose registered class (on any track) is
    ``cls`` itself: a submitted class never gets the truth, whatever it is called.
    """
    spec = METHODS.get(name)
    if spec is None or not spec.reference:
        return False
    targets = {spec.target, *(t for _, t in spec.track_targets)}
    return f"{cls.__module__}:{cls.__qualname__}" in targets


def resolve_method(name: str, track: str | None = None) -> tuple[str, type[RankingMethod]]:
    """A registered name, an entry point, or ``package.module:Class`` -> (name, class).

    ``track`` picks the class of a name registered with a different class per track.
    """
    methods = all_methods()
    if name.startswith("recbole:"):  # any RecBole model by name; torch loads only on fit
        # imported by name like every registered target (the registry imports no method)
        for_model = importlib.import_module(RECBOLE_ADAPTER).for_model
        return name, for_model(name.partition(":")[2])
    if name in methods:
        if track is not None and track not in methods[name].tracks:
            raise KeyError(f"method {name!r} does not run on track {track!r}; it runs on "
                           f"{list(methods[name].tracks)}")
        target = methods[name].target_for(track)
    elif ":" in name:
        target = name
    else:
        raise KeyError(
            f"unknown method {name!r}; registered: {sorted(methods)} "
            "(or pass package.module:Class)"
        )
    module_name, _, attr = target.partition(":")
    try:
        cls = getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as e:
        raise KeyError(f"cannot load method {target!r}: {e}") from e
    if name in methods:
        return name, cls
    display = getattr(cls, "name", attr)
    if not isinstance(display, str) or not display.strip():
        display = attr
    builtin = METHODS.get(display)
    own = builtin is not None and target in {builtin.target, *(t for _, t in
                                                             builtin.track_targets)}
    if (builtin is not None and not own) or (builtin is None and is_builtin_name(display)):
        raise NameCollision(
            f"method {target!r} is named {display!r}, a built-in method's name: its records "
            "would overwrite the built-in's; give the class another `name`")
    if display in methods and display not in METHODS:  # an entry point's name
        raise NameCollision(f"method {target!r} is named {display!r}, the name of entry point "
                            f"{methods[display].target!r}; give the class another `name`")
    return display, cls


#: the methods a class must have to be built as a method of a track (lora-edit: an editor;
#: every other track: fit and score), checked before a class named by a file is instantiated
PROTOCOL_METHODS: dict[str, tuple[str, ...]] = {"lora-edit": ("fit", "edit")}
TRUST_CODE_RULE = ("records, judges and configs resolve a method only to a registered name or "
                   "target; --trust-code (trust_code=True) imports the class they name")


def registered_targets() -> set[str]:
    """Every ``module:Class`` a registered name (built-in or entry point) resolves to."""
    targets: set[str] = set()
    for spec in all_methods().values():
        targets.add(spec.target)
        targets.update(t for _, t in spec.track_targets)
    return targets


def resolve_from_file(target: str | None, *, path: str | os.PathLike, name: str | None = None,
                      track: str | None = None, trust_code: bool = False) -> type:
    """The method class a file (a record, a judge folder, a config) names, imported safely.

    A registered ``name`` (built-in, ``recbole:<Model>`` or entry point) resolves as
    :func:`resolve_method` does and ``target`` is ignored; a ``target`` that is a registered
    class is imported. Anything else is :class:`~benchmark.errors.UntrustedCode` (exit 2)
    unless ``trust_code``: a file can name any importable object (``subprocess:Popen``), so
    nothing it names is imported without the caller's say-so. Even with ``trust_code`` the
    object must be a class with its track's methods (fit and score; lora-edit: fit and edit)
    before anything builds it.
    """
    from benchmark.errors import UntrustedCode

    if name is not None and (name in all_methods() or name.startswith("recbole:")):
        return resolve_method(name, track)[1]
    if not isinstance(target, str) or ":" not in target:
        raise UntrustedCode(f"names no method class ({target!r})", path=str(path),
                            rule=TRUST_CODE_RULE)
    if target not in registered_targets() and not trust_code:
        raise UntrustedCode(
            f"names the method class {target!r}{f' (method {name!r})' if name else ''}, "
            "which is not a registered method. gembench does not import code named by a "
            "file: a record or judge can name any importable object. If you trust this file "
            "and the code it names, re-run with --trust-code (api: trust_code=True); a "
            "record of a class run as --method package.module:Class is reproduced only so",
            path=str(path), rule=TRUST_CODE_RULE)
    module_name, _, attr = target.partition(":")
    try:
        obj = getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as e:
        raise UntrustedCode(f"cannot load method {target!r}: {e}", path=str(path),
                            rule=TRUST_CODE_RULE) from e
    needed = PROTOCOL_METHODS.get(str(track), ("fit", "score"))
    missing = [m for m in needed if not callable(getattr(obj, m, None))]
    if not inspect.isclass(obj) or missing:
        raise UntrustedCode(
            f"{target!r} is not a method class of track {track or 'lora-rec'!r} (a class "
            f"with {' and '.join(needed)}; "
            f"{'not a class' if not inspect.isclass(obj) else 'lacks ' + ', '.join(missing)})"
            "; not built", path=str(path), rule="a method follows its track's protocol")
    return obj
