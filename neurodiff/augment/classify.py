"""The downstream classifier: patient vs control from pooled slices, judged per subject.

Small and fast on purpose (the experiment fits it hundreds of times): each image is average-pooled
2x2 (48^2 -> 24^2 pixels), standardised with the training images' statistics and fed to an
L2-regularised logistic regression (scikit-learn, liblinear: six times faster than lbfgs at
these sizes) whose strength ``classifier_c`` is fixed in
advance, never tuned on the test subjects. A subject's score is the mean of its slices' decision
values; the AUROC is taken over test *subjects* (its slices are not independent).
"""

from __future__ import annotations

import numpy as np

__all__ = ["auroc", "features", "fit_score", "pair_matrix", "subject_scores"]


def features(images: np.ndarray, pool: int = 2) -> np.ndarray:
    """``(N, 1, *spatial)`` images or volumes -> ``(N, F)`` voxels average-pooled ``pool`` per
    side (a reshape and a mean: the blocks of every spatial axis at once)."""
    # The block mean stays: torch's avg_pool2d/3d was tried and moved the scores by 2e-4.
    x = np.asarray(images, dtype=np.float32)[:, 0]
    n, spatial = len(x), x.shape[1:]
    kept = [s // pool for s in spatial]
    x = x[(slice(None), *(slice(0, k * pool) for k in kept))]
    blocks = [d for k in kept for d in (k, pool)]
    x = x.reshape(n, *blocks).mean(axis=tuple(range(2, 2 + 2 * len(kept), 2)))
    return x.reshape(n, -1)


def fit_score(train_x: np.ndarray, train_y: np.ndarray, test_x: np.ndarray, c: float) -> np.ndarray:
    """Fit the classifier on features ``train_x`` (labels 0/1, both present) and return the
    decision values of ``test_x`` (higher = more patient-like)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    model = make_pipeline(
        StandardScaler(),
        LogisticRegression(
            C=c, class_weight="balanced", solver="liblinear", max_iter=500, random_state=0
        ),
    )
    model.fit(train_x, train_y)
    return model.decision_function(test_x)


def subject_scores(scores: np.ndarray, subjects: np.ndarray, order: list[str]) -> np.ndarray:
    """Mean slice score of each subject of ``order``."""
    codes = {s: i for i, s in enumerate(order)}
    idx = np.array([codes[s] for s in subjects])
    total = np.bincount(idx, weights=scores, minlength=len(order))
    return total / np.bincount(idx, minlength=len(order))


def pair_matrix(scores: np.ndarray, y: np.ndarray) -> np.ndarray:
    """``(n_pos, n_neg)``: 1 where a positive outscores a negative, 0.5 for a tie, else 0. Its
    mean is the AUROC (Mann-Whitney); weighted means of it are bootstrap AUROCs."""
    pos, neg = scores[y == 1], scores[y == 0]
    diff = pos[:, None] - neg[None, :]
    return (diff > 0) + 0.5 * (diff == 0)


def auroc(scores: np.ndarray, y: np.ndarray) -> float:
    """Area under the ROC curve of ``scores`` for labels ``y`` (0/1): the Mann-Whitney count over
    ``n_pos * n_neg``, rounded once."""
    # Not sklearn's roc_auc_score: its trapezoids over the ROC curve differ from this exact count
    # in the last bit for about a third of score sets, which would move chapter 6's numbers; and
    # the paired bootstrap (stats.bootstrap_aurocs) needs the pair matrices anyway.
    return float(pair_matrix(np.asarray(scores, dtype=np.float64), np.asarray(y)).mean())
