"""Uncertainty of the experiment: a hierarchical bootstrap, Holm's correction and "worth N".

Two sources of chance move an arm's AUROC: **which subjects a draw took** (and so which
generator it fine-tuned: the draw is resampled with its generator) and **which subjects form the
test set**. Each bootstrap replicate resamples both: the test subjects with replacement within
each class, with **one set of weights shared by every arm and every n** (so that gains and
learning curves are paired), and the draws with replacement within each n (shared by the arms of
that n). An arm's replicate is the mean over the resampled draws of a weighted Mann-Whitney AUROC.
Written here because no library bootstraps an AUROC over two crossed factors; the weighted
count is one matrix product per draw.

"Worth N real subjects" is read from a fitted learning curve: an inverse power law
``f(m) = a - b m^-c`` (Figueroa et al. 2012; scipy's ``curve_fit``) through the real-only points
(arm A at ``n``, arms E_k at ``n + k``, the ceiling at the pool size). An arm's AUROC ``v`` at
``n`` is worth ``f^-1(v) - f^-1(A(n))`` subjects per class: negative when the arm is below A, and
censored at the pool size (``at least``) when ``v`` is beyond what the curve reaches there.
"""

from __future__ import annotations

import numpy as np

from ..measures.intervals import percentile_interval
from .classify import pair_matrix

__all__ = [
    "BootstrapWeights",
    "auroc_replicates",
    "draws_for",
    "fit_curve",
    "holm",
    "inverse_curve",
    "p_value",
    "sd_split",
    "worth_of",
]


class BootstrapWeights:
    """The replicates' weights: test subjects per class (shared by every arm and n) and draws
    per n (shared by the arms of that n). ``only`` = ``"draws"`` or ``"test"`` resamples one
    factor and keeps the other whole (the variance split of :func:`sd_split`)."""

    def __init__(
        self, y: np.ndarray, draws: dict[int, int], n_boot: int, seed: int, only: str = ""
    ) -> None:
        rng = np.random.default_rng([seed, 6])
        self.n_boot, self.y = n_boot, np.asarray(y)
        self.pos, self.neg = np.flatnonzero(y == 1), np.flatnonzero(y == 0)
        self.wp = self._counts(rng, len(self.pos), n_boot)
        self.wn = self._counts(rng, len(self.neg), n_boot)
        self.wd = {n: self._counts(rng, d, n_boot) for n, d in sorted(draws.items())}
        if only == "draws":
            self.wp, self.wn = np.ones_like(self.wp), np.ones_like(self.wn)
        elif only == "test":
            self.wd = {n: np.ones_like(w) for n, w in self.wd.items()}

    @staticmethod
    def _counts(rng: np.random.Generator, k: int, n_boot: int) -> np.ndarray:
        idx = rng.integers(0, k, (n_boot, k))
        return np.stack([np.bincount(row, minlength=k) for row in idx]).astype(np.float64)


def sd_split(
    arm: np.ndarray, reference: np.ndarray, y: np.ndarray, n_boot: int, seed: int
) -> tuple[float, float]:
    """Standard deviations of a gain's bootstrap that come from the draws alone and from the
    test subjects alone (``arm``, ``reference``: ``(draws, test subjects)`` scores at one n):
    more draws shrink the first as 1/sqrt(draws), never the second."""
    out = []
    for only in ("draws", "test"):
        w = BootstrapWeights(y, {0: len(arm)}, n_boot, seed, only=only)
        gain = auroc_replicates(arm, w, 0)[1] - auroc_replicates(reference, w, 0)[1]
        out.append(float(np.std(gain, ddof=1)))
    return out[0], out[1]


def draws_for(
    half_width: float, sd_draws: float, sd_test: float, draws: int, level_z: float = 1.96
) -> int | None:
    """Draws for a 95 % interval of ``half_width``: the draws' share shrinks as 1/sqrt(draws),
    the test subjects' does not; None when the test subjects alone are too wide (more test
    subjects are needed, not more draws)."""
    room = (half_width / level_z) ** 2 - sd_test**2
    if room <= 0:
        return None
    return max(draws, int(np.ceil(draws * sd_draws**2 / room)))


def auroc_replicates(
    scores: np.ndarray, w: BootstrapWeights, n: int | None
) -> tuple[float, np.ndarray]:
    """``scores``: ``(draws, test subjects)`` of one arm at one n (``n`` None: an arm without
    draws, one row). Returns the AUROC averaged over draws and its ``n_boot`` replicates."""
    scores = np.atleast_2d(scores)
    per_draw = np.empty((len(scores), w.n_boot))
    plain = np.empty(len(scores))
    norm = w.wp.sum(1) * w.wn.sum(1)
    for d, s in enumerate(scores):
        h = pair_matrix(s, w.y)  # positives and negatives in the order of w.pos and w.neg
        plain[d] = h.mean()
        per_draw[d] = np.einsum("bp,pb->b", w.wp, h @ w.wn.T) / norm
    if n is None:
        return float(plain.mean()), per_draw[0]
    wd = w.wd[n]
    if wd.shape[1] != len(scores):
        raise ValueError(f"{len(scores)} draws of scores, {wd.shape[1]} draw weights at n={n}")
    return float(plain.mean()), (per_draw.T * wd).sum(1) / len(scores)


def p_value(estimate: float, replicates: np.ndarray) -> float:
    """Two-sided p-value of "the gain is zero" from the bootstrap's standard error (normal
    approximation, z = estimate / SE). Not the replicates' tail share: with 1000 replicates that
    cannot go below 0.001, and Holm's correction over a family of a hundred comparisons would
    then never reach 0.05."""
    from scipy.stats import norm

    sd = float(np.std(np.asarray(replicates, dtype=float), ddof=1))
    if sd == 0.0:
        return 1.0 if estimate == 0 else 0.0
    return float(2.0 * norm.sf(abs(estimate) / sd))


def holm(p: np.ndarray) -> np.ndarray:
    """Holm's step-down adjusted p-values (family-wise error), in the input's order."""
    p = np.asarray(p, dtype=float)
    order = np.argsort(p, kind="stable")
    m = len(p)
    adjusted = np.empty(m)
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p[i]))
        adjusted[i] = running
    return adjusted


def _power_law(m, a, b, c):
    return a - b * np.power(m, -c)


def fit_curve(m: np.ndarray, v: np.ndarray) -> tuple[float, float, float]:
    """``(a, b, c)`` of ``f(m) = a - b m^-c`` through the points ``(m, v)`` (least squares,
    ``a`` in [0.5, 1], ``b`` in [0, 10], ``c`` in [0.05, 3])."""
    from scipy.optimize import curve_fit

    m, v = np.asarray(m, float), np.asarray(v, float)
    a0 = float(min(0.999, max(v.max() + 0.01, 0.51)))
    try:
        (a, b, c), _ = curve_fit(
            _power_law,
            m,
            v,
            p0=(a0, max(a0 - v.min(), 1e-3), 0.5),
            bounds=([0.5, 0.0, 0.05], [1.0, 10.0, 3.0]),
            maxfev=5000,
        )
    except RuntimeError:  # no convergence: a flat curve at the mean
        return float(v.mean()), 0.0, 1.0
    return float(a), float(b), float(c)


def inverse_curve(v: float, curve: tuple[float, float, float]) -> float:
    """``m`` with ``f(m) = v`` (``inf`` when ``v`` is at or above the plateau ``a``)."""
    a, b, c = curve
    if b <= 0:
        return np.inf if v >= a else 0.0
    if v >= a:
        return np.inf
    with np.errstate(over="ignore"):  # far below the curve: m overflows to inf, as it should
        return float((b / (a - v)) ** (1.0 / c))


def worth_of(
    value: float, reference: float, curve: tuple[float, float, float], m_max: float
) -> tuple[float, str]:
    """Extra real subjects per class that ``value`` is worth beside ``reference`` (arm A at the
    same n): ``f^-1(value) - f^-1(reference)``; ``how`` is ``"fitted"``, or ``"at least"`` when
    ``value`` needs more subjects per class than the curve was fitted on (``m_max``, the pool
    size: censored there)."""
    m_ref = min(inverse_curve(reference, curve), m_max)
    m_val = inverse_curve(value, curve)
    if m_val > m_max:
        return float(m_max - m_ref), "at least"
    return float(m_val - m_ref), "fitted"


def interval(replicates: np.ndarray) -> tuple[float, float]:
    """The study's percentile 95 % interval of bootstrap replicates."""
    return percentile_interval(np.asarray(replicates)[np.isfinite(replicates)])
