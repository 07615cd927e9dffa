"""Pairwise comparison models: penalised maximum-likelihood scores from win counts, batched over bootstrap
resamples.

Conventions
-----------
* Bradley-Terry (``model="bt"``): ``P(k beats l) = 1 / (1 + exp(-(s_k - s_l)))``; ``score`` = ``s``, the
  natural-log strength, mean 0 over the methods. ``elo = 400 / ln(10) * score + 1000`` (a difference of 400
  Elo points is odds of 10:1).
* Thurstone Case V (``model="thurstone"``): ``P(k beats l) = Phi((s_k - s_l) / c)`` with
  ``c = 1 / Phi^-1(0.75) = 1.4826``, so ``score`` is in JOD: 1 JOD difference = 75% preference (as in pwcmp).
  ``elo`` is not defined (NaN).
* Prior: each score has an independent ``N(0, prior_sd^2)`` prior (default ``prior_sd = 10`` in the model's
  unit), i.e. the penalised likelihood ``loglik - sum(s^2) / (2 prior_sd^2)``. It is weak (a method with
  100 votes moves by < 1e-3 logit) but keeps a method that wins or loses every vote finite, and fixes the
  sum of the scores to 0 at the optimum. ``prior_sd = inf`` is the plain MLE (then the comparison graph
  must be strongly connected for a finite optimum).
* Davidson's (1970) tie model ``P(k beats l) = pi_k / (pi_k + pi_l + nu sqrt(pi_k pi_l))``,
  ``P(tie) = nu sqrt(pi_k pi_l) / (...)`` (BT only): :func:`fit_davidson`.
"""

from __future__ import annotations

import math

import numpy as np

from ..errors import SRMetricsError

MODELS: tuple[str, ...] = ("bt", "thurstone")
JOD_SCALE = 1.482602218505602  # 1 / Phi^-1(0.75): Thurstone noise scale that makes 1 JOD = 75% preference
ELO_SCALE = 400.0 / math.log(10.0)
ELO_BASE = 1000.0
DEFAULT_PRIOR_SD = 10.0


def _link(d: np.ndarray, model: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """log F(d), its first and second derivative for the win probability F of the model."""
    from scipy.special import expit, log_expit, log_ndtr

    if model == "bt":
        p = expit(d)
        return log_expit(d), 1.0 - p, -p * (1.0 - p)
    z = d / JOD_SCALE
    logf = log_ndtr(z)
    r = np.exp(-0.5 * z * z - 0.5 * math.log(2 * math.pi) - logf)  # phi(z) / Phi(z), stable for z << 0
    return logf, r / JOD_SCALE, -(r * (z + r)) / JOD_SCALE ** 2


def fit_scores(wins: np.ndarray, *, model: str = "bt", prior_sd: float = DEFAULT_PRIOR_SD, tol: float = 1e-10,
               max_iter: int = 200, init: np.ndarray | None = None) -> np.ndarray:
    """Penalised-ML scores from (fractional) win counts ``wins[..., k, l]`` (k beat l), batched over
    leading axes: ``[m, m] -> [m]``, ``[B, m, m] -> [B, m]``. Newton's method with steps capped at 2 units
    (the objective is concave), from ``init`` (a warm start, same shape as the scores) or 0; scores are
    centred to mean 0."""
    if model not in MODELS:
        raise SRMetricsError(f"model must be one of {', '.join(MODELS)}, got {model!r}")
    w = np.asarray(wins, dtype=np.float64)
    single = w.ndim == 2
    if single:
        w = w[None]
    bsz, m, _ = w.shape
    lam = 0.0 if not np.isfinite(prior_sd) else 1.0 / prior_sd ** 2
    s = np.zeros((bsz, m)) if init is None else np.array(np.broadcast_to(init, (bsz, m)), dtype=np.float64)
    eye = np.eye(m)
    active = np.ones(bsz, bool)
    for _ in range(max_iter):
        sa, wa = s[active], w[active]
        d = sa[:, :, None] - sa[:, None, :]
        _, g, h = _link(d, model)
        a = wa * g
        grad = a.sum(-1) - a.sum(-2) - lam * sa
        c = wa * h
        c = c + np.swapaxes(c, -1, -2)
        hess = c.sum(-1)[:, :, None] * eye - c - lam * eye
        if lam == 0.0:  # fix the free translation: add -1/m on every entry (the gradient is orthogonal to it)
            hess = hess - 1.0 / m
        step = np.linalg.solve(hess, grad[..., None])[..., 0]
        big = np.abs(step).max(-1, keepdims=True)
        step = np.where(big > 2.0, step * (2.0 / np.maximum(big, 1e-300)), step)
        s[active] = sa - step
        done = big[:, 0] < tol
        idx = np.flatnonzero(active)
        active[idx[done]] = False
        if not active.any():
            break
    s -= s.mean(-1, keepdims=True)
    return s[0] if single else s


def one_step_scores(wins_b: np.ndarray, scores: np.ndarray, *, model: str = "bt",
                    prior_sd: float = DEFAULT_PRIOR_SD) -> np.ndarray:
    """Scores of resampled win counts ``wins_b`` ``[B, m, m]`` by one Newton step from the full-data fit
    ``scores``: ``s* = s - H*(s)^-1 g*(s)``, with the resampled log-likelihood's gradient and Hessian at ``s``
    (the one-step bootstrap; it equals the refit to first order). A resample that leaves a method winning every
    vote moves it one step, not off to the prior's edge as a refit would: with few votes per pair refits made
    bootstrap intervals several times wider than the estimate's spread. Centred."""
    s = np.asarray(scores, np.float64)
    m = len(s)
    lam = 0.0 if not np.isfinite(prior_sd) else 1.0 / prior_sd ** 2
    _, g, h = _link(s[:, None] - s[None, :], model)
    w = np.asarray(wins_b, np.float64)
    a = w * g
    grad = a.sum(-1) - a.sum(-2) - lam * s  # [B, m]
    c = w * h
    c = c + np.swapaxes(c, -1, -2)
    hess = c.sum(-1)[:, :, None] * np.eye(m) - c - lam * np.eye(m)
    if lam == 0.0:
        hess = hess - 1.0 / m
    out = s - np.linalg.solve(hess, grad[..., None])[..., 0]
    return out - out.mean(-1, keepdims=True)


def _davidson_nll(x: np.ndarray, wins: np.ndarray, ties: np.ndarray, lam: float) -> tuple[float, np.ndarray]:
    m = wins.shape[0]
    s, theta = x[:m], x[m]
    nu = math.exp(theta)
    d = s[:, None] - s[None, :]
    dd = 2.0 * np.cosh(d / 2.0) + nu
    n = wins + wins.T + ties
    iu = np.triu_indices(m, 1)
    ll = (wins * d / 2.0).sum() - (n[iu] * np.log(dd[iu])).sum() + theta * ties[iu].sum()
    ll -= 0.5 * lam * (s ** 2).sum()
    g = ((wins - wins.T) / 2.0 - n * np.sinh(d / 2.0) / dd).sum(1) - lam * s
    g_theta = ties[iu].sum() - (n[iu] * nu / dd[iu]).sum()
    return -ll, -np.concatenate([g, [g_theta]])


def fit_davidson(wins: np.ndarray, ties: np.ndarray, *, prior_sd: float = DEFAULT_PRIOR_SD
                 ) -> tuple[np.ndarray, np.ndarray]:
    """Davidson's tie model: ``(scores, nu)`` from strict wins ``[..., m, m]`` and symmetric tie counts;
    batched over leading axes; L-BFGS-B per fit, ``log nu`` bounded to [-20, 5]."""
    from scipy.optimize import minimize

    w = np.asarray(wins, np.float64)
    t = np.asarray(ties, np.float64)
    single = w.ndim == 2
    if single:
        w, t = w[None], t[None]
    bsz, m, _ = w.shape
    lam = 0.0 if not np.isfinite(prior_sd) else 1.0 / prior_sd ** 2
    scores = np.empty((bsz, m))
    nus = np.empty(bsz)
    bounds = [(None, None)] * m + [(-20.0, 5.0)]
    for i in range(bsz):
        res = minimize(_davidson_nll, np.zeros(m + 1), args=(w[i], t[i], lam), jac=True, method="L-BFGS-B",
                       bounds=bounds, options={"maxiter": 2000, "ftol": 1e-14, "gtol": 1e-9})
        scores[i] = res.x[:m] - res.x[:m].mean()
        nus[i] = math.exp(res.x[m])
    return (scores[0], nus[0]) if single else (scores, nus)


def win_probability(diff: np.ndarray, model: str = "bt") -> np.ndarray:
    """P(row beats col) from a score difference (BT logit or Thurstone JOD)."""
    from scipy.special import expit, ndtr

    return expit(diff) if model == "bt" else ndtr(np.asarray(diff) / JOD_SCALE)


__all__ = ["DEFAULT_PRIOR_SD", "ELO_BASE", "ELO_SCALE", "JOD_SCALE", "MODELS", "fit_davidson", "fit_scores",
           "one_step_scores", "win_probability"]
