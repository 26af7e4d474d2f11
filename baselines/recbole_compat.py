"""The smallest shim that lets RecBole 1.2.1 run on numpy 2, scipy 1.17 and torch 2.14.

Import this module before anything from ``recbole`` (``baselines.recbole_adapter``
and ``benchmark.crosscheck_recbole`` do). Each restoration is idempotent and
touches only what RecBole uses; ``RESTORED`` lists what this process needed.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import scipy.sparse as sp

RESTORED: list[str] = []

# numpy 2 removed these aliases; recbole.config.Configurator.compatibility_settings
# reads them to re-create np.float / np.complex / np.unicode (and with them np.bool,
# np.int, np.long, np.object, np.str, which RecBole's metrics and dataset code use).
for _alias, _target in (("float_", np.float64), ("complex_", np.complex128),
                        ("unicode_", np.str_)):
    if not hasattr(np, _alias):
        setattr(np, _alias, _target)
        RESTORED.append(f"numpy.{_alias}")

# scipy >= 1.13 made dok_matrix store its entries in ._dict and dropped the private
# dict-update ._update that LightGCN / NGCF / NCL / GCMC / SpectralCF call to build the
# normalised adjacency matrix; this restores it (keys are in-range (row, col) pairs there).
if not hasattr(sp.dok_matrix, "_update"):
    def _dok_update(self: sp.dok_matrix, data: dict[tuple[int, int], Any]) -> None:
        self._dict.update(data)

    sp.dok_matrix._update = _dok_update  # type: ignore[attr-defined]
    RESTORED.append("scipy.sparse.dok_matrix._update")


class _TrustedLoadTorch:
    """``torch`` as RecBole's trainer sees it, with ``load(weights_only=False)`` by default.

    torch >= 2.6 defaults ``torch.load`` to ``weights_only=True``, which refuses the
    checkpoints RecBole's Trainer writes itself (they pickle its Config). Only the
    trainer module's reference is replaced, so no other code loads pickles by default.
    """

    def __init__(self, torch: Any) -> None:
        self._torch = torch

    def __getattr__(self, name: str) -> Any:
        if name == "_torch":  # not set yet (e.g. copy / pickle): no recursion
            raise AttributeError(name)
        return getattr(self._torch, name)

    def load(self, *args: Any, **kwargs: Any) -> Any:
        kwargs.setdefault("weights_only", False)
        return self._torch.load(*args, **kwargs)


def patch_trainer_checkpoints() -> None:
    """Let RecBole's Trainer reload its own checkpoints (evaluate(load_best_model=True))."""
    import recbole.trainer.trainer as trainer_module

    if not isinstance(trainer_module.torch, _TrustedLoadTorch):
        trainer_module.torch = _TrustedLoadTorch(trainer_module.torch)
        RESTORED.append("recbole.trainer.trainer.torch.load(weights_only=False)")


patch_trainer_checkpoints()
