"""Method hyper-parameters, scikit-learn style: read from ``__init__``, built with a seed.

One implementation for every track's methods (ranking, pairs, editing), so ``get_params``
means the same thing in every record and ``build`` seeds every method the same way.
"""

from __future__ import annotations

import inspect
from typing import Any

import numpy as np


def init_params(cls: type) -> set[str]:
    """The named ``__init__`` parameters of ``cls`` (``self``, ``*args``, ``**kw`` left out)."""
    if cls.__init__ is object.__init__:
        return set()
    sig = inspect.signature(cls.__init__)
    skip = (inspect.Parameter.VAR_KEYWORD, inspect.Parameter.VAR_POSITIONAL)
    return {p for p, v in sig.parameters.items() if p != "self" and v.kind not in skip}


class Params:
    """``get_params`` / ``set_params`` from the ``__init__`` signature.

    Hyper-parameters are the ``__init__`` arguments, stored under the same names; learned
    state ends in ``_`` and is never a parameter.
    """

    name: Any = "method"

    def get_params(self) -> dict[str, Any]:
        """Hyper-parameters: the ``__init__`` arguments, read back from attributes."""
        if type(self).__init__ is object.__init__:
            return {}
        sig = inspect.signature(type(self).__init__)
        skip = (inspect.Parameter.VAR_KEYWORD, inspect.Parameter.VAR_POSITIONAL)
        return {p: getattr(self, p) for p in sig.parameters
                if p != "self" and sig.parameters[p].kind not in skip}

    def set_params(self, **params: Any) -> Params:
        valid = self.get_params()
        for key, value in params.items():
            if key not in valid:
                raise ValueError(f"{self.name} has no parameter {key!r}; it has {sorted(valid)}")
            setattr(self, key, value)
        return self


def build(cls: type, seed: int = 0, params: dict[str, Any] | None = None,
          *, only_known: bool = False) -> Any:
    """``cls(seed=seed)`` when ``cls`` takes a seed (else ``cls()``), then ``set_params``.

    ``only_known`` drops the ``params`` that ``cls`` does not take (options given to every
    method of a run, such as a VLM's ``model``); otherwise an unknown one is an error.
    """
    accepted = init_params(cls)
    method = cls(seed=seed) if "seed" in accepted else cls()
    params = dict(params or {})
    if only_known:
        params = {k: v for k, v in params.items() if k in accepted}
    return method.set_params(**params) if params else method


def jsonable(params: dict[str, Any]) -> dict[str, Any]:
    """Parameters with numpy scalars as Python numbers (JSON records)."""
    return {k: (v.item() if isinstance(v, np.generic) else v) for k, v in params.items()}
