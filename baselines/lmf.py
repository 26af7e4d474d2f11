"""``lmf``: Logistic Matrix Factorisation (Johnson, 2014) via ``implicit``.

p(l_ui | u_u, v_i) = σ(u_uᵀ v_i + β_u + β_i), with ``neg_prop`` sampled negatives
per positive, fitted by AdaGrad; score(u, i) = u_uᵀ v_i (+ biases, stored by
implicit as factor columns). implicit has no GPU build of LMF, so it always runs
on the CPU; single-threaded by default for the same reproducibility reason as
``bpr`` (lock-free SGD).
"""

from __future__ import annotations

from typing import Any, ClassVar

from baselines.als import ImplicitModel


class LMF(ImplicitModel):
    """Logistic matrix factorisation; seeded, CPU only, one thread by default."""

    name = "lmf"
    has_gpu_build: ClassVar[bool] = False
    search_space: ClassVar[dict[str, list[Any]]] = {
        "factors": [16, 32, 64],
        "learning_rate": [0.1, 0.5, 1.0],
        "regularization": [0.1, 0.6, 2.0],
        "neg_prop": [10, 30],
        "iterations": [30],
    }
    default_budget: ClassVar[int] = 6

    def __init__(self, factors: int = 30, learning_rate: float = 1.0, regularization: float = 0.6,
                 neg_prop: int = 30, iterations: int = 30, seed: int = 0, num_threads: int = 1):
        self.factors = factors
        self.learning_rate = learning_rate
        self.regularization = regularization
        self.neg_prop = neg_prop
        self.iterations = iterations
        self.seed = seed
        self.num_threads = num_threads

    def _model_params(self) -> dict[str, Any]:
        return {"factors": int(self.factors), "learning_rate": float(self.learning_rate),
                "regularization": float(self.regularization), "neg_prop": int(self.neg_prop),
                "iterations": int(self.iterations)}

    def _model_class(self, use_gpu: bool) -> Any:
        from implicit.cpu.lmf import LogisticMatrixFactorization

        return LogisticMatrixFactorization
