"""``als``: implicit-feedback matrix factorisation by alternating least squares.

Hu, Koren & Volinsky (ICDM 2008), through the ``implicit`` package: confidence
c_ui = 1 + α·x_ui, preference p_ui = 1[x_ui > 0], and

    min_{U,V} Σ_{u,i} c_ui (p_ui − u_uᵀ v_i)² + λ (Σ_u ‖u_u‖² + Σ_i ‖v_i‖²)
    score(u, i) = u_uᵀ v_i   (one batched product U[users] @ Vᵀ)

This module also holds :class:`ImplicitModel`, the shared wrapper of ``als``,
``bpr`` and ``lmf``: seeded (``random_state``), CPU threads capped
(``num_threads``; BLAS held to one thread while fitting, as ``implicit`` asks),
and the GPU build used when ``implicit.gpu.HAS_CUDA`` (``als``, ``bpr``). All three
score on a torch device too (``score_torch``, used by ``--device cuda``).
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np

from benchmark.protocols import InteractionData, RankingMethod, SideInfo


class ImplicitModel(RankingMethod):
    """Base for ``implicit`` models: subclasses name the model and their parameters."""

    has_gpu_build: ClassVar[bool] = True

    seed: int
    num_threads: int

    def _model_params(self) -> dict[str, Any]:
        raise NotImplementedError

    def _model_class(self, use_gpu: bool) -> Any:
        raise NotImplementedError

    def fit(self, train: InteractionData, side: SideInfo) -> ImplicitModel:
        import implicit.gpu
        from threadpoolctl import threadpool_limits

        use_gpu = bool(self.has_gpu_build and implicit.gpu.HAS_CUDA)
        params = self._model_params()
        params["random_state"] = int(self.seed)
        if not use_gpu:
            params["num_threads"] = int(self.num_threads)
        # implicit warns when BLAS runs multi-threaded next to its own threads
        with threadpool_limits(limits=1, user_api="blas"):
            model = self._model_class(use_gpu)(**params)
            model.fit(train.matrix.astype(np.float32).tocsr(), show_progress=False)
        if use_gpu:
            model = model.to_cpu()
        self.user_factors_ = np.ascontiguousarray(model.user_factors, dtype=np.float32)
        self.item_factors_ = np.ascontiguousarray(model.item_factors, dtype=np.float32)
        self.used_gpu_ = use_gpu
        return self

    def score(self, user_idx: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        return np.matmul(self.user_factors_[user_idx], self.item_factors_.T, out=out)

    def score_torch(self, user_idx: np.ndarray, device: Any) -> Any:
        """``score`` on a torch device (the GPU engine): the factors are uploaded once."""
        from benchmark.device import factor_scores_torch

        return factor_scores_torch(self, self.user_factors_, self.item_factors_, user_idx,
                                   device)


class ALS(ImplicitModel):
    """Weighted ALS (implicit's conjugate-gradient solver); deterministic for a seed."""

    name = "als"
    search_space: ClassVar[dict[str, list[Any]]] = {
        "factors": [32, 64, 128],
        "regularization": [0.01, 0.1, 1.0, 10.0],
        "alpha": [1.0, 5.0, 20.0, 50.0],
        "iterations": [15],
    }
    default_budget: ClassVar[int] = 8

    def __init__(self, factors: int = 64, regularization: float = 0.01, alpha: float = 1.0,
                 iterations: int = 15, seed: int = 0, num_threads: int = 2):
        self.factors = factors
        self.regularization = regularization
        self.alpha = alpha
        self.iterations = iterations
        self.seed = seed
        self.num_threads = num_threads

    def _model_params(self) -> dict[str, Any]:
        return {"factors": int(self.factors), "regularization": float(self.regularization),
                "alpha": float(self.alpha), "iterations": int(self.iterations)}

    def _model_class(self, use_gpu: bool) -> Any:
        from implicit.als import AlternatingLeastSquares

        return lambda **p: AlternatingLeastSquares(use_gpu=use_gpu, **p)
