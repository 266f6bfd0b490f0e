"""Bradley-Terry: the maximum a posteriori fit of P(i beats j) = 1 / (1 + exp(theta_j - theta_i)).

All games count at once, so the fit does not depend on the order of episodes (unlike `elo`).
Draws count as half a win to each side. A weak Gaussian prior theta_i ~ N(0, ln(10)^2), one
sd being 400 Elo points (10:1 odds), keeps the fit finite when one policy always beats another
(perfect separation) and when a policy played nobody; with tens of games per pair its pull is
a few Elo points. Shown on the Elo scale, 400 log10 odds, shifted so the field's mean is 1500.

Newton's method, vectorised over any leading axes (bootstrap resamples, simulated runs): the
log posterior is strictly concave, so it converges from 0 in a handful of steps.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import special

PRIOR_SD = math.log(10.0)
"""Prior sd of theta in natural-log odds: 400 Elo points."""
ELO_PER_NAT = 400.0 / math.log(10.0)
ELO_MEAN = 1500.0
PRIOR_SD_ELO = PRIOR_SD * ELO_PER_NAT
MAX_STEP = 2.0
"""Largest Newton step (nats) per coordinate: a guard for far starts, never binding near the optimum."""


def fit(
    scores: np.ndarray,
    games: np.ndarray,
    start: np.ndarray | None = None,
    prior_sd: float = PRIOR_SD,
    tol: float = 1e-9,
) -> np.ndarray:
    """theta (..., m) from scores (..., m, m) (row's score over column) and games (m, m).

    `start` (broadcast to the result): where Newton starts, e.g. the point fit for its bootstrap
    replicates, which are then a few steps away. The answer does not depend on it.
    """
    m = scores.shape[-1]
    theta = np.zeros(scores.shape[:-1]) if start is None else np.broadcast_to(start, scores.shape[:-1]).copy()
    won = scores.sum(axis=-1)
    precision = 1.0 / prior_sd**2
    eye = np.eye(m)
    for _ in range(100):
        diff = theta[..., :, None] - theta[..., None, :]
        p = special.expit(diff)
        gradient = won - (games * p).sum(axis=-1) - precision * theta
        w = games * p * (1.0 - p)
        curvature = (w.sum(axis=-1)[..., None] * eye) - w + precision * eye  # minus the Hessian
        step = np.linalg.solve(curvature, gradient[..., None])[..., 0]
        step = np.clip(step, -MAX_STEP, MAX_STEP)
        theta = theta + step
        if np.max(np.abs(step), initial=0.0) < tol:
            break
    return theta


def to_elo(theta: np.ndarray) -> np.ndarray:
    """The Elo scale: 400 log10 odds, the field's mean at 1500 (per replicate)."""
    if theta.shape[-1] == 0:
        return theta.copy()
    return ELO_MEAN + ELO_PER_NAT * (theta - theta.mean(axis=-1, keepdims=True))
