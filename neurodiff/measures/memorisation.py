"""The memorisation audit: each synthetic sample's nearest training sample, against how close
unseen real samples come.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import torch

from ..errors import MetricError
from .checks import check_features, sq_dists
from .similarity import ssim

__all__ = [
    "AUDIT_QUANTILE",
    "MemorisationAudit",
    "audit_fraction_replicates",
    "memorisation_audit",
]


AUDIT_QUANTILE = 0.01


@dataclass
class MemorisationAudit:
    """Nearest training samples of the synthetic and of the real test samples.

    Attributes
    ----------
    syn_distance, syn_nearest, syn_ssim : np.ndarray
        Per synthetic sample: feature distance to, index of, and SSIM with its nearest training
        sample.
    test_distance, test_nearest, test_ssim : np.ndarray
        The same for each real test sample (the reference: how close unseen real data come).
    threshold : float
        The 1 % quantile of ``test_distance``.
    flagged : np.ndarray of bool
        Synthetic samples closer than ``threshold``.
    """

    syn_distance: np.ndarray
    syn_nearest: np.ndarray
    syn_ssim: np.ndarray
    test_distance: np.ndarray
    test_nearest: np.ndarray
    test_ssim: np.ndarray
    threshold: float
    quantile: float = AUDIT_QUANTILE
    flagged: np.ndarray = field(init=False)

    def __post_init__(self) -> None:
        self.flagged = self.syn_distance < self.threshold

    @property
    def fraction(self) -> float:
        """Fraction of synthetic samples closer to a training sample than 99 % of test samples."""
        return float(self.flagged.mean())

    def closest(self, k: int = 6) -> pd.DataFrame:
        """The ``k`` synthetic samples closest to a training sample, closest first."""
        order = np.argsort(self.syn_distance, kind="stable")[:k]
        return pd.DataFrame(
            {
                "synthetic": order,
                "train": self.syn_nearest[order],
                "distance": self.syn_distance[order],
                "ssim": self.syn_ssim[order],
                "flagged": self.flagged[order],
            }
        )

    def loo_test_flags(self) -> np.ndarray:
        """Real baseline: is each test sample below the 1 % quantile of the *other* test samples?"""
        d = self.test_distance
        return np.array([d[i] < np.quantile(np.delete(d, i), self.quantile) for i in range(len(d))])


def memorisation_audit(
    train: np.ndarray,
    test: np.ndarray,
    synthetic: np.ndarray,
    train_features: np.ndarray,
    test_features: np.ndarray,
    synthetic_features: np.ndarray,
    *,
    quantile: float = AUDIT_QUANTILE,
    device: torch.device | str = "cpu",
) -> MemorisationAudit:
    """Does the model reproduce its training samples?

    Each synthetic sample is matched to its nearest training sample in feature space (Euclidean),
    and so is each real test sample. A synthetic sample closer to a training sample than 99 % of
    the test samples are (``quantile`` = 0.01) is flagged: real unseen data almost never come
    that close, so such a sample is likely a copy.

    Parameters
    ----------
    train, test, synthetic : np.ndarray
        Images ``(N, 1, *spatial)`` in [0, 1] (for the SSIM of the matched pairs).
    train_features, test_features, synthetic_features : np.ndarray
        ``(N, F)`` features of the same images, in the same order.
    """
    train_features, synthetic_features = check_features(train_features, synthetic_features, 1)
    test_features, _ = check_features(
        test_features, train_features, 2, "the audit's threshold needs two test samples"
    )
    for img, f, name in (
        (train, train_features, "train"),
        (test, test_features, "test"),
        (synthetic, synthetic_features, "synthetic"),
    ):
        if len(img) != len(f):
            raise MetricError(f"{name}: {len(img)} images but {len(f)} feature vectors")
    d_syn = np.sqrt(sq_dists(synthetic_features, train_features))
    d_test = np.sqrt(sq_dists(test_features, train_features))
    nn_syn, nn_test = d_syn.argmin(1), d_test.argmin(1)
    dist_syn = d_syn[np.arange(len(nn_syn)), nn_syn]
    dist_test = d_test[np.arange(len(nn_test)), nn_test]
    return MemorisationAudit(
        syn_distance=dist_syn,
        syn_nearest=nn_syn,
        syn_ssim=ssim(synthetic, train[nn_syn], device=device),
        test_distance=dist_test,
        test_nearest=nn_test,
        test_ssim=ssim(test, train[nn_test], device=device),
        threshold=float(np.quantile(dist_test, quantile)),
        quantile=quantile,
    )


def audit_fraction_replicates(
    audit: MemorisationAudit, i_syn: np.ndarray, i_test: np.ndarray
) -> np.ndarray:
    thr = np.quantile(audit.test_distance[i_test], audit.quantile, axis=1)
    return (audit.syn_distance[i_syn] < thr[:, None]).mean(1)
