"""``bpr``: Bayesian Personalised Ranking (Rendle et al., UAI 2009) via ``implicit``.

SGD on sampled triples (u, i ∈ I_u, j ∉ I_u):

    max Σ ln σ(x̂_ui − x̂_uj) − λ‖Θ‖²,   x̂_ui = u_uᵀ v_i + b_i
    score(u, i) = u_uᵀ v_i + b_i   (implicit stores b_i as a factor column)

Why ``num_threads=1`` by default: implicit's SGD is lock-free (Hogwild) across
threads, so more than one thread makes the result depend on scheduling; with one
thread a seed gives identical factors.
"""

from __future__ import annotations

from typing import Any, ClassVar

from baselines.als import ImplicitModel


class BPR(ImplicitModel):
    """Pairwise-ranking matrix factorisation; seeded and single-threaded by default."""

    name = "bpr"
    search_space: ClassVar[dict[str, list[Any]]] = {
        "factors": [32, 64, 128],
        "learning_rate": [0.005, 0.01, 0.05, 0.1],
        "regularization": [0.0001, 0.001, 0.01, 0.1],
        "iterations": [50, 100, 200],
    }
    default_budget: ClassVar[int] = 8

    def __init__(self, factors: int = 64, learning_rate: float = 0.01,
                 regularization: float = 0.01, iterations: int = 100, seed: int = 0,
                 num_threads: int = 1):
        self.factors = factors
        self.learning_rate = learning_rate
        self.regularization = regularization
        self.iterations = iterations
        self.seed = seed
        self.num_threads = num_threads

    def _model_params(self) -> dict[str, Any]:
        return {"factors": int(self.factors), "learning_rate": float(self.learning_rate),
                "regularization": float(self.regularization),
                "iterations": int(self.iterations)}

    def _model_class(self, use_gpu: bool) -> Any:
        from implicit.bpr import BayesianPersonalizedRanking

        return lambda **p: BayesianPersonalizedRanking(use_gpu=use_gpu, **p)
