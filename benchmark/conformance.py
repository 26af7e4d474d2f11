"""``check_method(cls, track)``: test a method against its track's protocol before a run.

Like scikit-learn's ``check_estimator``: a submitter learns in seconds, on a tiny synthetic
world and through the harness's own training view, whether the class follows the rules a
run relies on. Each check names the rule it tests; the first broken one raises
:class:`ProtocolViolation`.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from benchmark.core.errors import GembenchError
from benchmark.core.params import build


class ProtocolViolation(GembenchError):
    """A method that breaks its track's protocol (the message names the rule)."""


def _check(ok: bool, rule: str, passed: list[str], detail: str = "") -> None:
    if not ok:
        raise ProtocolViolation(f"protocol violated: {rule}" + (f" ({detail})" if detail else ""))
    passed.append(rule)


def _params(cls: type, method: Any, passed: list[str]) -> None:
    from benchmark.registry import NameCollision, is_builtin_name

    name = getattr(cls, "name", None)
    _check(isinstance(name, str) and bool(name.strip()), "the class has a string `name`",
           passed)
    if is_builtin_name(name) and f"{cls.__module__}:{cls.__qualname__}".startswith("baselines."):
        passed.append("the name is the built-in's own")
    elif is_builtin_name(name):
        raise NameCollision(f"protocol violated: `name` {name!r} is a built-in's name")
    else:
        passed.append("the name is not a built-in's")
    params = method.get_params()
    _check(isinstance(params, dict), "get_params() returns a dict", passed)
    if hasattr(method, "set_params"):
        method.set_params(**params)
        _check(method.get_params() == params, "set_params(**get_params()) changes nothing",
               passed)


def _learned(method: Any, before: set[str], passed: list[str]) -> None:
    new = set(vars(method)) - before
    bad = sorted(a for a in new if not a.endswith("_") and not a.startswith("_"))
    _check(not bad, "fit stores learned state in attributes ending in '_'", passed,
           f"also set: {bad}")


def check_method(cls: type, track: str = "lora-rec", seed: int = 0,
                 data_dir: str | None = None) -> list[str]:
    """Fit ``cls`` on a tiny synthetic world through ``track``'s harness; the rules it passed.

    Ranking tracks (lora-rec, image-rec): ``fit(train, side)`` returns self and keeps learned
    state in ``*_`` attributes; ``score(user_idx)`` returns finite-or-``-inf`` floats of shape
    ``(len(user_idx), n_items)``, the same for the same seed. Preference: ``score(user_ids,
    image_ids)`` returns one finite float per pair member. Raises :class:`ProtocolViolation`
    at the first broken rule.
    """
    from benchmark.data.synthetic import synthesize
    from benchmark.tracks import get_spec

    spec = get_spec(track)
    passed: list[str] = []
    with tempfile.TemporaryDirectory(prefix="gembench-check-") as tmp:
        root = Path(data_dir or tmp)
        ds = synthesize("tiny", root / "synthetic-tiny", seed=seed, progress=False)
        if spec.method_protocol.endswith(":RankingMethod"):
            _check_ranking(cls, ds, spec, seed, root, passed)
        elif spec.name == "preference":
            _check_pairs(cls, ds, seed, passed)
        else:
            raise ValueError(f"check_method covers the ranking and preference tracks, not "
                             f"{track!r}")
    return passed


def _check_ranking(cls: type, ds: Any, spec: Any, seed: int, root: Path,
                   passed: list[str]) -> None:
    from benchmark.ranking_data import track_data, track_side
    from benchmark.splits import SplitConfig, prepare_split

    split = prepare_split(ds, SplitConfig(protocol="leave-last-out",
                                          tracks=("lora-rec", "image-rec"), seed=seed),
                          root, progress=False)
    fit, _ = track_data(split, spec.item_kind, "test")
    side = track_side(ds, split, spec.item_kind, "test", fit, seed=seed)
    scores = []
    for _ in range(2):
        method = build(cls, seed)
        if not scores:
            _params(cls, method, passed)
        before = set(vars(method))
        out = method.fit(fit, side)
        if not scores:
            _check(out is method, "fit(train, side) returns self", passed)
            _learned(method, before, passed)
        users = np.arange(min(7, fit.n_users))
        s = np.asarray(method.score(users))
        if not scores:
            _check(s.shape == (len(users), fit.n_items),
                   "score(user_idx) has shape (len(user_idx), n_items)", passed,
                   f"expected {(len(users), fit.n_items)}, got {s.shape}")
            _check(np.issubdtype(s.dtype, np.floating), "score returns floats", passed)
            _check(not np.isnan(s).any() and not np.isposinf(s).any(),
                   "scores are finite or -inf (no NaN, no +inf)", passed)
        scores.append(s)
    _check(np.array_equal(scores[0], scores[1]), "the same seed gives the same scores", passed)


def _check_pairs(cls: type, ds: Any, seed: int, passed: list[str]) -> None:
    from benchmark.protocols import SideInfo
    from benchmark.tracks.preference.track import make_preference_split
    from benchmark.views import preference_view

    split = make_preference_split(ds, seed=seed)
    train = split.few_shot("all")
    side = SideInfo(view=preference_view(ds), item_kind="image", seed=seed)
    test = split.test.head(20)
    users = np.concatenate([test["user_id"].to_numpy(object)] * 2)
    images = np.concatenate([test["image_a"].to_numpy(object), test["image_b"].to_numpy(object)])
    scores = []
    for _ in range(2):
        method = build(cls, seed)
        if not scores:
            _params(cls, method, passed)
        before = set(vars(method))
        out = method.fit(train, side)
        if not scores:
            _check(out is method, "fit(train_pairs, side) returns self", passed)
            _learned(method, before, passed)
        s = np.asarray(method.score(users, images))
        if not scores:
            _check(s.shape == (len(users),), "score(user_ids, image_ids) has one score each",
                   passed, f"expected {(len(users),)}, got {s.shape}")
            _check(np.isfinite(s).all(), "pair scores are finite", passed)
        scores.append(s)
    _check(np.array_equal(scores[0], scores[1]), "the same seed gives the same scores", passed)
