"""Speed of the metrics stage at the demo profile's size, and of its bootstrap.

1. All metrics (features, MMD with permutation test, FID, MS-SSIM diversity, precision/recall,
   density/coverage, memorisation audit, baselines, bootstrap CIs) for 64 synthetic vs 96 real
   test and 288 training 64^2 slices with the demo profile's settings. Goal: <= 90 s on 2 cores.
2. The bootstrap as implemented (replicates from cached features and kernel matrices, vectorised)
   against a naive loop that calls the library metric on every resample (MONAI FID and MMD,
   prdc, the RBF MMD rebuilding its kernel), measured in the same run on a few resamples and
   scaled to the profile's count. Re-extracting features per resample would be slower still.

The last line is the speed-up of the vectorised bootstrap over the naive loop.

    python benchmarks/metrics_speed.py [--naive-resamples 10]

Toy size (``tests/test_benchmarks.py``; seconds, the same code): the smoke profile's metric
settings on fewer, smaller phantoms::

    python benchmarks/metrics_speed.py --profile smoke --size 32 --counts 8,12,24 \
        --naive-resamples 2 --threads 1
"""

from __future__ import annotations

import argparse
import contextlib
import io
import time
import warnings

import numpy as np
import torch
from scipy.ndimage import gaussian_filter


def phantoms(n: int, size: int, seed: int) -> np.ndarray:
    """Brain-like 2D phantoms ``(n, 1, size, size)`` in [0, 1]."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size] / (size - 1) * 2 - 1
    out = np.zeros((n, 1, size, size), np.float32)
    for i in range(n):
        a, b = 0.75 + 0.08 * rng.standard_normal(), 0.6 + 0.06 * rng.standard_normal()
        r = (xx / a) ** 2 + (yy / b) ** 2
        tex = gaussian_filter(rng.standard_normal((size, size)), size / 16)
        img = np.where(r < 1, 0.35, 0) + np.where(r < 0.8, 0.3 + 0.1 * tex / tex.std(), 0)
        img -= np.where((xx / 0.15) ** 2 + (yy / 0.3) ** 2 < 1, 0.4, 0) * (r < 0.8)
        out[i, 0] = np.clip(gaussian_filter(img, 0.7), 0, 1)
    return out


def naive_bootstrap(r_img, s_img, r_f, s_f, nn_k, resamples, rng) -> float:
    """Seconds for ``resamples`` resamples, each calling the library metrics afresh."""
    import prdc
    from monai.metrics import FIDMetric, MMDMetric

    from neurodiff.measures import mmd_rbf

    n = len(r_f)
    start = time.perf_counter()
    for _ in range(resamples):
        i, j = rng.integers(0, n, n), rng.integers(0, n, n)
        with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            MMDMetric()(torch.from_numpy(r_img[i]).double(), torch.from_numpy(s_img[j]).double())
            mmd_rbf(r_f[i], s_f[j])
            FIDMetric()(torch.from_numpy(s_f[j]), torch.from_numpy(r_f[i]))
            prdc.compute_prdc(r_f[i], s_f[j], nn_k)
    return time.perf_counter() - start


def vectorised_bootstrap(r_img, s_img, r_f, s_f, b, rng) -> float:
    """Seconds for ``b`` resamples of the same metrics from cached kernel matrices."""
    from neurodiff.measures.checks import gram, sq_dists
    from neurodiff.measures.frechet import fid_replicates
    from neurodiff.measures.manifold import prdc_per_sample
    from neurodiff.measures.mmd import median_bandwidth, mmd2_replicates

    n = len(r_f)
    start = time.perf_counter()
    ia, ib = rng.integers(0, n, (b, n)), rng.integers(0, n, (b, n)) + n
    g_img = gram(np.concatenate([r_img, s_img]))
    mmd2_replicates(g_img, ia, ib)
    pooled = np.concatenate([r_f, s_f])
    d2 = sq_dists(pooled)
    mmd2_replicates(np.exp(-d2 / (2 * median_bandwidth(d2) ** 2)), ia, ib)
    fid_replicates(pooled @ pooled.T, ia, ib)
    per = prdc_per_sample(r_f, s_f, 5)
    for v in per.values():
        v[rng.integers(0, len(v), (b, len(v)))].mean(1)
    return time.perf_counter() - start


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--naive-resamples", type=int, default=10)
    parser.add_argument("--profile", default="demo", help="whose metric settings are timed")
    parser.add_argument("--size", type=int, default=64, help="phantom side in pixels")
    parser.add_argument(
        "--counts", default="64,96,288", help="synthetic, test and training phantoms"
    )
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    args = parser.parse_args(argv)

    from neurodiff import config
    from neurodiff import metrics as M
    from neurodiff.features import get_extractor

    torch.set_num_threads(args.threads)
    cfg = config.resolve(args.profile).stage(config.MetricsConfig)
    n_syn, n_test, n_train = (int(c) for c in args.counts.split(","))
    size = args.size
    test, train = phantoms(n_test, size, 1), phantoms(n_train, size, 2)
    synthetic = phantoms(n_syn, size, 3)
    extractor = get_extractor(cfg.extractor, seed=cfg.seed)  # network built outside the timing
    extractor(test[:2])  # warm-up (first-call allocations, lazy imports)

    start = time.perf_counter()
    result = M.evaluate(
        test,
        synthetic,
        train,
        extractor=extractor,
        n_bootstrap=cfg.n_bootstrap,
        n_permutations=cfg.n_permutations,
        msssim_pairs=cfg.msssim_pairs,
        nn_k=cfg.nn_k,
        seed=cfg.seed,
    )
    total = time.perf_counter() - start
    print(
        f"all metrics, {args.profile} profile ({len(synthetic)} synthetic vs {len(test)} test, "
        f"{len(train)} train, {size}^2; {cfg.n_bootstrap} bootstrap, {cfg.n_permutations} "
        f"permutations, {cfg.msssim_pairs} MS-SSIM pairs): {total:.1f} s (goal <= 90 s: "
        f"{'met' if total <= 90 else 'MISSED'})"
    )

    data = result.data
    r_img, s_img = data.real[data.subset["real"]], data.synthetic[data.subset["synthetic"]]
    r_f = data.features["real"][data.subset["real"]]
    s_f = data.features["synthetic"][data.subset["synthetic"]]
    rng = np.random.default_rng(0)
    fast = vectorised_bootstrap(r_img, s_img, r_f, s_f, cfg.n_bootstrap, rng)
    naive_part = naive_bootstrap(r_img, s_img, r_f, s_f, cfg.nn_k, args.naive_resamples, rng)
    naive = naive_part / args.naive_resamples * cfg.n_bootstrap
    print(
        f"bootstrap of MMD (images, features), FID, PRDC, vectorised: {fast:.2f} s for "
        f"{cfg.n_bootstrap} resamples"
    )
    print(
        f"naive loop of library calls: {naive_part:.2f} s for {args.naive_resamples} "
        f"resamples -> {naive:.1f} s for {cfg.n_bootstrap}"
    )
    print(f"vectorised bootstrap speedup vs naive loop: {naive / fast:.1f}x")


if __name__ == "__main__":
    main()
