"""Metrics of the lora-edit track: pure, vectorised; one value per (user, edited LoRA) pair.

Per-user values are the mean over that user's edited LoRAs (:func:`per_user_mean`); a summary is
the mean over users, with a 95% bootstrap interval over users (``benchmark.results``).
"""

from __future__ import annotations

import numpy as np

from benchmark.lora.bank import Layout


def preference_gain(edited: np.ndarray, original: np.ndarray) -> np.ndarray:
    """Judge score gained by the edit: ``gain_j = J(u_j, edit_j) - J(u_j, original_j)``."""
    return np.asarray(edited, np.float64) - np.asarray(original, np.float64)


def win_indicator(edited: np.ndarray, original: np.ndarray, tie_tol: float = 0.0) -> np.ndarray:
    """Win of the edit over the original, ties half a win.

    ``w_j = 1 if d_j > tol, 0.5 if |d_j| <= tol, 0 otherwise`` with ``d_j = J(edit) - J(orig)``;
    the win rate is the mean of ``w``.
    """
    d = preference_gain(edited, original)
    return np.where(np.abs(d) <= tie_tol, 0.5, (d > 0).astype(np.float64))


def render_fidelity(edited: np.ndarray, original: np.ndarray) -> np.ndarray:
    """Cosine similarity of renders: ``f_j = <e_j, o_j> / (||e_j|| ||o_j||)`` (0 if a norm is 0).

    With several renders per LoRA (prompts x seeds) pass their mean embedding.
    """
    e, o = np.asarray(edited, np.float64), np.asarray(original, np.float64)
    den = np.linalg.norm(e, axis=1) * np.linalg.norm(o, axis=1)
    return np.divide(np.einsum("nd,nd->n", e, o), den, out=np.zeros(len(e)), where=den > 0)


def weight_distance(a: np.ndarray, b: np.ndarray, layout: Layout) -> np.ndarray:
    """L2 distance of the weight updates: ``sqrt(sum_l ||dW_l(a) - dW_l(b)||_F^2)``.

    ``dW_l = up_l @ down_l`` of canonical vectors ``a``, ``b`` (n, dim) never formed: with
    ``U = [up_a, -up_b]`` and ``D = [down_a; down_b]``, ``||U D||_F^2 = sum((U^T U) * (D D^T))``.
    """
    a = np.asarray(a, np.float64).reshape(-1, layout.dim)
    b = np.asarray(b, np.float64).reshape(-1, layout.dim)
    total = np.zeros(len(a))
    for _, o, i, k, su, sd in layout.slices():
        up = np.concatenate([a[:, su].reshape(-1, o, k), -b[:, su].reshape(-1, o, k)], axis=2)
        down = np.concatenate([a[:, sd].reshape(-1, k, i), b[:, sd].reshape(-1, k, i)], axis=1)
        total += np.einsum("nab,nab->n", np.einsum("noa,nob->nab", up, up),
                           np.einsum("nai,nbi->nab", down, down))
    return np.sqrt(np.maximum(total, 0.0))


def per_user_mean(values: np.ndarray, user_index: np.ndarray, n_users: int) -> np.ndarray:
    """Mean of ``values`` per user: ``m_u = sum_{j: user_j = u} v_j / |{j: user_j = u}|``.

    Users without a value get NaN.
    """
    counts = np.bincount(user_index, minlength=n_users).astype(np.float64)
    sums = np.bincount(user_index, weights=np.asarray(values, np.float64), minlength=n_users)
    return np.divide(sums, counts, out=np.full(n_users, np.nan), where=counts > 0)
