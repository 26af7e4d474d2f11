"""Where the full-ranking engine runs: ``--device auto|cpu|cuda`` (and ``cpu-torch`` for tests).

* ``cpu`` -- the numpy engine (:func:`benchmark.ranking.topk`); the default, and what
  ``auto`` falls back to, so numbers and speed without a GPU are exactly those of before.
* ``cuda`` / ``cuda:N`` -- the torch engine on a GPU: scores, masking and the exact top-K
  stay on the device; only the top-K lists come back.
* ``cpu-torch`` -- the same torch engine on the CPU. It exists so the torch code path is
  tested (against the numpy one) on machines without a GPU; it is not meant to be faster.
* ``auto`` -- ``cuda`` when ``torch.cuda.is_available()``, else ``cpu``.

torch is imported only here, inside functions, so ``gembench --help`` stays fast.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from benchmark.errors import GembenchError

__all__ = ["DEVICES", "factor_scores_torch", "is_torch_device", "resolve_device",
           "torch_device"]

#: what ``--device`` accepts (``cuda:N`` too)
DEVICES = ("auto", "cpu", "cuda", "cpu-torch")


def resolve_device(device: str | None = "cpu") -> str:
    """The concrete engine for a ``--device`` value: ``cpu``, ``cpu-torch`` or ``cuda[:N]``.

    Why a clear error for ``cuda`` without a GPU: silently falling back would make a record
    claim a GPU run it never had; ``auto`` is the value that falls back.
    """
    name = "cpu" if device is None else str(device).strip().lower()
    if name == "cpu" or name == "cpu-torch":
        if name == "cpu-torch":
            _import_torch(name)
        return name
    if name == "auto":
        try:
            import torch
        except ImportError:
            return "cpu"
        return "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda" or (name.startswith("cuda:") and name[5:].isdigit()):
        torch = _import_torch(name)
        if not torch.cuda.is_available():
            raise GembenchError(f"device {name!r} requested but no CUDA device is available "
                                "(rule: --device cuda needs a CUDA GPU; use auto or cpu)")
        if ":" in name and int(name[5:]) >= torch.cuda.device_count():
            raise GembenchError(f"device {name!r}: only {torch.cuda.device_count()} CUDA "
                                "device(s) (rule: cuda:N names an existing GPU)")
        return name
    raise GembenchError(f"unknown device {device!r} (rule: device is one of "
                        f"{', '.join(DEVICES)} or cuda:N)")


def is_torch_device(resolved: str) -> bool:
    """Whether a resolved device runs the torch engine (everything but ``cpu``)."""
    return resolved != "cpu"


def torch_device(resolved: str) -> Any:
    """The ``torch.device`` of a resolved torch-engine device (``cpu-torch`` -> cpu)."""
    import torch

    return torch.device("cpu" if resolved == "cpu-torch" else resolved)


def _import_torch(name: str) -> Any:
    try:
        import torch
    except ImportError as e:
        raise GembenchError(f"device {name!r} needs torch, which is not installed "
                            "(rule: install the cf extra, or use --device cpu)") from e
    return torch


def factor_scores_torch(owner: Any, user_factors: np.ndarray, item_factors: np.ndarray,
                        user_idx: np.ndarray, device: Any) -> Any:
    """``U[user_idx] @ V.T`` as a float32 tensor on ``device``: a factor model's ``score_torch``.

    The factors are copied to the device once and kept on ``owner`` (``_device_factors``),
    keyed by the device and by the identity of the numpy arrays, so a refit (new arrays)
    uploads again. On the CPU the tensors share the numpy memory (no copy). The product
    is exactly fp32 unless the caller enabled TF32 (``torch.backends.cuda.matmul``).
    """
    import torch

    device = torch.device(device)
    cache = getattr(owner, "_device_factors", None)
    if (cache is None or cache[0] != device or cache[1] is not user_factors
            or cache[2] is not item_factors):
        u = torch.from_numpy(np.ascontiguousarray(user_factors, dtype=np.float32))
        v = torch.from_numpy(np.ascontiguousarray(item_factors, dtype=np.float32))
        cache = (device, user_factors, item_factors, u.to(device), v.to(device))
        owner._device_factors = cache
    u_dev, v_dev = cache[3], cache[4]
    idx = torch.from_numpy(np.ascontiguousarray(user_idx, dtype=np.int64)).to(device)
    return u_dev.index_select(0, idx) @ v_dev.T
