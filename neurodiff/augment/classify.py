"""The downstream classifiers: patient vs control from slices, judged per subject.

Two learners, so that the answer does not hang on one:

* ``logistic`` -- each image average-pooled 2x2 (48^2 -> 24^2 pixels), standardised with the
  training images' statistics, an L2-regularised logistic regression (scikit-learn, liblinear: six
  times faster than lbfgs at these sizes); its strength ``C`` is a hyper-parameter, tuned on the
  validation pool (:data:`fit_logistic` fits every ``C`` of the grid at once);
* ``cnn`` -- a small convolutional network (three 3x3 conv layers, 8-16-16 channels, on the
  pooled 24^2 images, a 3x3 map into a linear head), a few seconds per fit on a CPU; the number
  of training steps is its tuned hyper-parameter (scores are taken after each third of
  ``cnn_steps``).

A subject's score is the mean of its slices' decision values; the AUROC is taken over *subjects*
(its slices are not independent).
"""

from __future__ import annotations

import numpy as np

__all__ = [
    "CLASSIFIERS",
    "auroc",
    "features",
    "fit_cnn",
    "fit_logistic",
    "fit_score",
    "pair_matrix",
    "subject_scores",
]

#: The learners, in the order of the tables.
CLASSIFIERS: tuple[str, ...] = ("logistic", "cnn")


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


def fit_logistic(
    train_x: np.ndarray, train_y: np.ndarray, tests: list[np.ndarray], grid: tuple[float, ...]
) -> dict[str, list[np.ndarray]]:
    """:func:`fit_score` for every ``C`` of ``grid``: ``{"C=<c>": [decision values of each
    array of tests]}`` (features already computed by :func:`features`)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    scaler = StandardScaler().fit(train_x)
    xt = scaler.transform(train_x)
    tests_t = [scaler.transform(t) for t in tests]
    out = {}
    for c in grid:
        model = LogisticRegression(
            C=c, class_weight="balanced", solver="liblinear", max_iter=500, random_state=0
        ).fit(xt, train_y)
        out[f"C={c:g}"] = [model.decision_function(t) for t in tests_t]
    return out


def _cnn(dims: int):
    from torch import nn

    conv = nn.Conv2d if dims == 2 else nn.Conv3d
    pool = nn.MaxPool2d if dims == 2 else nn.MaxPool3d
    avg = nn.AdaptiveAvgPool2d if dims == 2 else nn.AdaptiveAvgPool3d
    # the head keeps a coarse 3x3 map, not one global average: the disease is regional (frontal,
    # insular, temporal), and a global average would leave the network texture statistics only
    return nn.Sequential(
        conv(1, 8, 3, padding=1),
        nn.ReLU(),
        pool(2),
        conv(8, 16, 3, padding=1),
        nn.ReLU(),
        pool(2),
        conv(16, 16, 3, padding=1),
        nn.ReLU(),
        avg(3),
        nn.Flatten(),
        nn.Dropout(0.25),
        nn.Linear(16 * 3**dims, 1),
    )


def _pooled(images: np.ndarray):
    """Images average-pooled 2 per side (volumes too), as tensors."""
    import torch

    x = torch.as_tensor(np.asarray(images, dtype=np.float32))
    pool = torch.nn.functional.avg_pool2d if x.ndim == 4 else torch.nn.functional.avg_pool3d
    return pool(x, 2)


def fit_cnn(
    train: np.ndarray,
    train_y: np.ndarray,
    tests: list[np.ndarray],
    steps: int,
    seed: int,
    evaluations: int = 3,
) -> dict[str, list[np.ndarray]]:
    """Train the small CNN on ``train`` images (``(N, 1, *spatial)``, labels 0/1) for ``steps`` Adam
    steps (batch 32, classes balanced by weighting) and return the decision values of each array
    of ``tests`` after every ``steps / evaluations`` steps: ``{"steps=<s>": [...]}``."""
    import torch

    torch.manual_seed(seed)
    net = _cnn(np.asarray(train).ndim - 2)
    opt = torch.optim.Adam(net.parameters(), lr=3e-3, weight_decay=1e-4)
    x, y = _pooled(train), torch.as_tensor(np.asarray(train_y), dtype=torch.float32)
    pos = float(y.mean())
    weight = torch.where(y > 0.5, 0.5 / max(pos, 1e-6), 0.5 / max(1 - pos, 1e-6))
    tests_t = [_pooled(t) for t in tests]
    gen = torch.Generator().manual_seed(seed)
    at = {int(round(steps * (i + 1) / evaluations)) for i in range(evaluations)}
    out: dict[str, list[np.ndarray]] = {}
    for step in range(1, steps + 1):
        net.train()
        idx = torch.randint(0, len(x), (min(32, len(x)),), generator=gen)
        logits = net(x[idx])[:, 0]
        loss = torch.nn.functional.binary_cross_entropy_with_logits(
            logits, y[idx], weight=weight[idx]
        )
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if step in at:
            net.eval()
            with torch.no_grad():
                out[f"steps={step}"] = [
                    torch.cat([net(t[i : i + 512])[:, 0] for i in range(0, len(t), 512)]).numpy()
                    for t in tests_t
                ]
    return out


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
