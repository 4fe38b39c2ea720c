"""Metrics against independent references, their behaviour under degradation, and bad input."""

from __future__ import annotations

import importlib.util
import json

import numpy as np
import pandas as pd
import pytest
import scipy.linalg
import torch
from scipy.ndimage import gaussian_filter

from neurodiff import artifacts, measures
from neurodiff import metrics as M
from neurodiff.errors import MetricError
from neurodiff.features import get_extractor
from neurodiff.measures import frechet as fid_module
from neurodiff.measures import mmd as mmd_module
from neurodiff.measures import similarity as ssim_module
from neurodiff.measures.checks import gram
from neurodiff.metrics import entries as entries_module
from neurodiff.metrics import inputs as inputs_module

# --------------------------------------------------------------------------------------------
# Tiny brain-like phantoms: a head ellipse, a skull ring, textured "brain", ventricles
# --------------------------------------------------------------------------------------------


def phantoms(n: int, size: int = 32, seed: int = 0) -> np.ndarray:
    """``(n, 1, size, size)`` float32 in [0, 1]; each image jittered in shape and texture."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size] / (size - 1) * 2 - 1
    out = np.zeros((n, 1, size, size), np.float32)
    for i in range(n):
        a, b = 0.75 + 0.08 * rng.standard_normal(), 0.6 + 0.06 * rng.standard_normal()
        cx, cy = 0.05 * rng.standard_normal(2)
        th = 0.2 * rng.standard_normal()
        x = (xx - cx) * np.cos(th) + (yy - cy) * np.sin(th)
        y = -(xx - cx) * np.sin(th) + (yy - cy) * np.cos(th)
        r = (x / a) ** 2 + (y / b) ** 2
        tex = gaussian_filter(rng.standard_normal((size, size)), size / 16)
        tex /= tex.std()
        img = (
            np.where(r < 1, 0.35, 0)
            + np.where(r < 0.8, 0.3 + 0.1 * tex, 0)
            + np.where((r > 0.83) & (r < 1), 0.3, 0)
        )
        img -= np.where((x / 0.15) ** 2 + (y / 0.3) ** 2 < 1, 0.4, 0) * (r < 0.8)
        out[i, 0] = np.clip(gaussian_filter(img, 0.7), 0, 1)
    return out


def degrade(images: np.ndarray, sigma: float, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.clip(images + sigma * rng.standard_normal(images.shape), 0, 1).astype(np.float32)


KW = {"n_bootstrap": 30, "n_permutations": 30, "msssim_pairs": 20, "nn_k": 3, "seed": 0}


@pytest.fixture(scope="module")
def sets() -> dict[str, np.ndarray]:
    return {
        "test": phantoms(24, seed=1),
        "train": phantoms(40, seed=2),
        "synthetic": phantoms(24, seed=3),
    }


@pytest.fixture(scope="module")
def extractor():
    return get_extractor("random", seed=0)


@pytest.fixture(scope="module")
def noise_results(sets, extractor) -> dict[float, M.MetricsResult]:
    return {
        s: M.evaluate(
            sets["test"], degrade(sets["synthetic"], s), sets["train"], extractor=extractor, **KW
        )
        for s in (0.0, 0.1, 0.5)
    }


# --------------------------------------------------------------------------------------------
# FID
# --------------------------------------------------------------------------------------------


def _scipy_frechet(x: np.ndarray, y: np.ndarray) -> float:
    mu1, mu2 = x.mean(0), y.mean(0)
    s1, s2 = np.cov(x, rowvar=False), np.cov(y, rowvar=False)
    covmean = scipy.linalg.sqrtm(s1 @ s2).real
    return float(((mu1 - mu2) ** 2).sum() + np.trace(s1 + s2 - 2 * covmean))


def test_fid_of_a_set_with_itself_is_zero(sets, extractor):
    f = extractor(sets["test"])
    assert abs(measures.fid(f, f)) < 1e-6
    x = np.random.default_rng(0).normal(size=(50, 6))
    assert abs(measures.fid(x, x)) < 1e-8


@pytest.mark.parametrize(("n", "d"), [(400, 5), (30, 12)])
def test_fid_equals_scipy_closed_form_frechet_distance(n, d):
    rng = np.random.default_rng(n)
    a, b = rng.normal(size=(d, d)), rng.normal(size=(d, d))
    x = rng.normal(size=(n, d)) @ a + 1.0
    y = rng.normal(size=(n + 7, d)) @ b - 0.5
    expected = _scipy_frechet(x, y)
    assert expected > 1.0
    assert measures.fid(x, y) == pytest.approx(expected, rel=1e-6)
    # the bootstrap's Gram-matrix form gives the same value at the identity resample
    pooled = np.concatenate([x, y])
    ia, ib = np.arange(len(x))[None], np.arange(len(x), len(pooled))[None]
    assert fid_module.fid_replicates(pooled @ pooled.T, ia, ib)[0] == pytest.approx(
        expected, rel=1e-6
    )


def test_fid_gram_form_matches_monai_with_fewer_samples_than_features():
    rng = np.random.default_rng(1)
    x, y = rng.normal(size=(20, 64)), rng.normal(size=(20, 64)) + 0.2
    pooled = np.concatenate([x, y])
    gram_form = fid_module.fid_replicates(
        pooled @ pooled.T, np.arange(20)[None], np.arange(20, 40)[None]
    )[0]
    assert measures.fid(x, y) == pytest.approx(gram_form, rel=1e-5)


# --------------------------------------------------------------------------------------------
# MMD
# --------------------------------------------------------------------------------------------


def _brute_mmd2(x: np.ndarray, y: np.ndarray, k) -> float:
    m, n = len(x), len(y)
    xx = sum(k(x[i], x[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
    yy = sum(k(y[i], y[j]) for i in range(n) for j in range(n) if i != j) / (n * (n - 1))
    xy = sum(k(x[i], y[j]) for i in range(m) for j in range(n)) / (m * n)
    return xx + yy - 2 * xy


def test_rbf_mmd_equals_brute_force_numpy():
    rng = np.random.default_rng(2)
    x, y = rng.normal(size=(12, 4)), rng.normal(size=(15, 4)) + 0.5
    pooled = np.concatenate([x, y])
    dists = [np.linalg.norm(pooled[i] - pooled[j]) for i in range(27) for j in range(27) if i != j]
    sigma = np.median(dists)
    expected = _brute_mmd2(x, y, lambda a, b: np.exp(-np.sum((a - b) ** 2) / (2 * sigma**2)))
    out = measures.mmd_rbf(x, y, n_permutations=50)
    assert out.bandwidth == pytest.approx(sigma, rel=1e-9)
    assert out.value == pytest.approx(expected, rel=1e-9)
    assert 0 < out.p_value <= 1


def test_linear_mmd_equals_brute_force_numpy_and_bootstrap_form(sets):
    x, y = sets["test"][:10], sets["synthetic"][:10]
    xf, yf = x.reshape(10, -1).astype(np.float64), y.reshape(10, -1).astype(np.float64)
    expected = _brute_mmd2(xf, yf, lambda a, b: float(a @ b))
    assert measures.mmd_linear(x, y) == pytest.approx(expected, rel=1e-9, abs=1e-9)
    g = gram(np.concatenate([x, y]))
    reps = mmd_module.mmd2_replicates(g, np.arange(10)[None], np.arange(10, 20)[None])
    assert reps[0] == pytest.approx(expected, rel=1e-9, abs=1e-9)


def test_linear_mmd_is_negative_for_identical_sets(sets):
    # the unbiased estimate of a zero quantity: for a set against itself it is below zero
    assert measures.mmd_linear(sets["test"], sets["test"]) < 0


def test_mmd_permutation_test_separates_distributions():
    rng = np.random.default_rng(3)
    same = measures.mmd_rbf(rng.normal(size=(30, 3)), rng.normal(size=(30, 3)), n_permutations=200)
    diff = measures.mmd_rbf(
        rng.normal(size=(30, 3)), rng.normal(size=(30, 3)) + 1.5, n_permutations=200
    )
    assert diff.p_value < 0.01 < same.p_value


def test_kid_equals_torchmetrics_kernel_inception_distance_on_the_same_features():
    """KID on features is torchmetrics' KernelInceptionDistance with the features as its
    "network" and one subset of all samples; its replicates are the same U-statistic."""
    import warnings

    from torchmetrics.image.kid import KernelInceptionDistance

    rng = np.random.default_rng(4)
    x, y = rng.normal(size=(20, 6)), rng.normal(0.4, 1.0, size=(20, 6))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "will save all extracted features in buffer"
        metric = KernelInceptionDistance(feature=torch.nn.Identity(), subsets=1, subset_size=20)
    metric.update(torch.from_numpy(x), real=True)
    metric.update(torch.from_numpy(y), real=False)
    expected = float(metric.compute()[0])
    assert measures.kid(x, y) == pytest.approx(expected, rel=1e-9)
    k = measures.poly_kernel(np.concatenate([x, y]))
    reps = mmd_module.mmd2_replicates(k, np.arange(20)[None], np.arange(20, 40)[None])
    assert reps[0] == pytest.approx(expected, rel=1e-9)
    assert abs(measures.kid(x, x[::-1])) < abs(expected)  # unbiased: about 0 for one set
    with pytest.raises(MetricError, match="equal size"):
        measures.kid(x, y[:10])


def test_bootstrap_mmd_ignores_duplicated_pairs():
    # resampling one point twice must not count k(x, x) = 1 as a within-set pair
    k = np.eye(4) * 0 + np.exp(-np.abs(np.subtract.outer(np.arange(4.0), np.arange(4.0))))
    reps = mmd_module.mmd2_replicates(k, np.array([[0, 0, 1]]), np.array([[2, 3, 3]]))
    xx = k[0, 1]
    yy = k[2, 3]
    xy = k[np.ix_([0, 0, 1], [2, 3, 3])].mean()
    assert reps[0] == pytest.approx(xx + yy - 2 * xy)


# --------------------------------------------------------------------------------------------
# MS-SSIM
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("shape", "kernel", "scales"),
    [
        ((64, 64), 4, 5),
        ((128, 128, 128), 8, 5),
        ((32, 32), 3, 4),
        ((16, 16), 4, 3),
        ((8, 8), 4, 2),
    ],
)
def test_ms_ssim_settings_rule(shape, kernel, scales):
    k, w = measures.ms_ssim_settings(shape)
    assert (k, len(w)) == (kernel, scales)
    assert sum(w) == pytest.approx(1.0)


def test_ms_ssim_settings_rejects_tiny_images():
    with pytest.raises(MetricError, match="too small for"):
        measures.ms_ssim_settings((2, 2))


@pytest.mark.parametrize("size", [16, 32, 64])
def test_ms_ssim_of_identical_images_is_one(size):
    x = phantoms(3, size, seed=size)
    np.testing.assert_allclose(measures.ms_ssim(x, x), 1.0, atol=1e-5)
    other = phantoms(3, size, seed=size + 1)
    assert (measures.ms_ssim(x, other) < 0.99).all()


def test_ms_ssim_of_identical_volumes_is_one():
    v = np.random.default_rng(0).uniform(size=(2, 1, 16, 16, 16)).astype(np.float32)
    v = gaussian_filter(v, (0, 0, 1, 1, 1)).astype(np.float32)
    np.testing.assert_allclose(measures.ms_ssim(v, v), 1.0, atol=1e-5)


def test_diversity_pairs_are_distinct():
    pairs = ssim_module._random_pairs(6, 100, np.random.default_rng(0))
    assert len(pairs) == 15  # all 6 * 5 / 2 pairs, no more
    assert (pairs[:, 0] < pairs[:, 1]).all()
    assert len({tuple(p) for p in pairs}) == 15


# --------------------------------------------------------------------------------------------
# Precision / recall / density / coverage
# --------------------------------------------------------------------------------------------


def test_prdc_per_sample_means_equal_prdc_package():
    rng = np.random.default_rng(4)
    x, y = rng.normal(size=(40, 5)), rng.normal(size=(35, 5)) * 1.3 + 0.3
    ref = measures.prdc_metrics(x, y, nn_k=4)
    per = measures.prdc_per_sample(x, y, nn_k=4)
    for key in ("precision", "recall", "density", "coverage"):
        assert per[key].mean() == pytest.approx(ref[key], abs=1e-12)
    assert len(per["precision"]) == 35 and len(per["recall"]) == 40


# --------------------------------------------------------------------------------------------
# All metrics together: direction under degradation, CIs, memorisation
# --------------------------------------------------------------------------------------------


def test_every_metric_moves_the_right_way_as_noise_grows(noise_results):
    r = [noise_results[s].metrics for s in sorted(noise_results)]
    for name in ("mmd_linear", "mmd_rbf", "fid", "kid", "nn_distance"):
        vals = [m[name].value for m in r]
        assert vals[0] < vals[1] < vals[2], (name, vals)
    for name in ("precision", "density", "coverage", "nn_ssim"):
        vals = [m[name].value for m in r]
        assert vals[0] >= vals[1] >= vals[2] and vals[0] > vals[2], (name, vals)
    # Recall is not monotone: mild noise spreads the synthetic set, its k-NN balls grow and cover
    # the real samples (recall -> 1, the flaw coverage was designed to fix, Naeem et al. 2020);
    # only strong degradation takes it down. The notebook teaches this pitfall.
    recall = [m["recall"].value for m in r]
    assert recall[2] < recall[0], recall
    gaps = [abs(m["ms_ssim_diversity"].value - m["ms_ssim_diversity"].baseline) for m in r]
    assert gaps[0] < gaps[1] < gaps[2], gaps
    fractions = [m["memorised_fraction"].value for m in r]
    assert fractions[0] >= fractions[1] >= fractions[2]
    # the baseline does not depend on the synthetic set
    assert r[0]["fid"].baseline == r[2]["fid"].baseline


def test_memorisation_fraction_falls_as_copies_are_degraded(sets, extractor):
    test, train = sets["test"], sets["train"]
    f_test, f_train = extractor(test), extractor(train)
    audits = []
    for sigma in (0.0, 0.05, 0.3):
        copies = degrade(train[:16], sigma)
        audits.append(
            measures.memorisation_audit(train, test, copies, f_train, f_test, extractor(copies))
        )
    fractions = [a.fraction for a in audits]
    assert fractions[0] == 1.0 and fractions[0] >= fractions[1] >= fractions[2], fractions
    assert fractions[2] < 0.5
    ssims = [a.syn_ssim.mean() for a in audits]
    assert ssims[0] == pytest.approx(1.0, abs=1e-5) and ssims[0] > ssims[1] > ssims[2]


def test_cis_contain_point_estimates(noise_results):
    for result in noise_results.values():
        assert set(result.metrics) == set(M.METRICS)  # every metric, the tissue gaps too
        for m in result.metrics.values():
            assert m.ci[0] <= m.value <= m.ci[1], (m.name, m.value, m.ci)
            assert m.baseline_ci[0] <= m.baseline <= m.baseline_ci[1], (m.name, m.baseline_ci)
    for name in (
        "mmd_linear",
        "mmd_rbf",
        "fid",
        "kid",
        "ms_ssim_diversity",
        "nn_distance",
        "nn_ssim",
    ):
        m = noise_results[0.0].metrics[name]
        assert m.ci[1] > m.ci[0] and m.baseline_ci[1] > m.baseline_ci[0], name


def test_percentile_ci_is_recentred_on_the_estimate():
    reps = np.linspace(10, 12, 101)  # bootstrap shifted well above the estimate
    lo, hi = measures.percentile_ci(5.0, reps)
    assert lo < 5.0 < hi
    assert hi - lo == pytest.approx(np.percentile(reps, 97.5) - np.percentile(reps, 2.5))
    assert measures.percentile_ci(0.01, reps - 11, bounds=(0.0, None))[0] == 0.0


def test_audit_flags_exact_copies_planted_among_synthetic(sets, extractor):
    planted = {3: 5, 9: 17, 14: 33}  # synthetic index -> training index copied
    syn = degrade(sets["synthetic"][:16], 0.02)
    for s, t in planted.items():
        syn[s] = sets["train"][t]
    test, train = sets["test"], sets["train"]
    audit = measures.memorisation_audit(
        train, test, syn, extractor(train), extractor(test), extractor(syn)
    )
    assert set(planted) <= set(np.flatnonzero(audit.flagged))
    top = audit.closest(3)
    assert set(top["synthetic"]) == set(planted)
    assert all(planted[s] == t for s, t in zip(top["synthetic"], top["train"]))
    np.testing.assert_allclose(top["ssim"], 1.0, atol=1e-5)
    entry = entries_module.audit_metrics(audit, extractor.name, 30, np.random.default_rng(0))
    assert entry["memorised_fraction"].value >= 3 / 16
    assert entry["memorised_fraction"].baseline < 0.1
    assert entry["memorised_fraction"].ci[0] <= entry["memorised_fraction"].value


def test_evaluate_on_volumes_reads_them_2p5d():
    rng = np.random.default_rng(0)

    def vols(n, shift):
        v = gaussian_filter(rng.uniform(size=(n, 1, 16, 16, 16)), (0, 0, 2, 2, 2)) + shift
        return np.clip((v - v.min()) / (v.max() - v.min()), 0, 1).astype(np.float32)

    ext = get_extractor("random", slices_per_axis=4)
    result = M.evaluate(
        vols(6, 0),
        vols(5, 0),
        vols(6, 0),
        extractor=ext,
        n_bootstrap=10,
        n_permutations=10,
        msssim_pairs=5,
        nn_k=2,
    )
    assert "2.5D" in result.extractor
    assert result.data.features["real"].shape == (6, 768)
    assert result.n_subset == 5 and (result.n_real, result.n_synthetic) == (6, 5)


# --------------------------------------------------------------------------------------------
# Extractors
# --------------------------------------------------------------------------------------------


def test_random_extractor_is_deterministic_and_seeded(sets):
    x = sets["test"][:4]
    f0, f0b = get_extractor("random", seed=0)(x), get_extractor("random", seed=0)(x)
    np.testing.assert_array_equal(f0, f0b)
    assert not np.allclose(f0, get_extractor("random", seed=1)(x))
    # a sample's features do not depend on its batch
    np.testing.assert_allclose(get_extractor("random", seed=0)(x[:1]), f0[:1], rtol=1e-5, atol=1e-7)


def test_medicalnet_extractor_loads_a_user_state_dict(tmp_path):
    from monai.networks.nets import resnet10

    torch.manual_seed(0)
    net = resnet10(
        spatial_dims=3,
        n_input_channels=1,
        feed_forward=False,
        shortcut_type="B",
        bias_downsample=False,
        conv1_t_stride=2,
    ).eval()
    path = tmp_path / "resnet_10_23dataset.pth"
    torch.save({"state_dict": {f"module.{k}": v for k, v in net.state_dict().items()}}, path)
    ext = get_extractor(f"medicalnet:{path}")
    assert "resnet10" in ext.name and path.name in ext.name
    x = np.random.default_rng(0).uniform(size=(2, 1, 16, 16, 16)).astype(np.float32)
    t = torch.from_numpy(x)
    z = torch.stack([(v - v[v > 0].mean()) / v[v > 0].std() for v in t])
    with torch.inference_mode():
        expected = net(z).double().numpy()
    np.testing.assert_allclose(ext(x), expected, rtol=1e-5, atol=1e-6)


# --------------------------------------------------------------------------------------------
# Bad input
# --------------------------------------------------------------------------------------------


def test_sets_of_different_shapes_are_refused(sets):
    with pytest.raises(MetricError, match=r"differ in shape: \(1, 32, 32\) vs \(1, 16, 16\)"):
        M.evaluate(sets["test"], phantoms(24, 16), sets["train"], **KW)


def test_too_few_samples_says_how_many(sets):
    with pytest.raises(
        MetricError,
        match=r"synthetic set has 3 samples; the metrics need at "
        r"least 4 \(.*nn_k=3",
    ):
        M.evaluate(sets["test"], sets["synthetic"][:3], sets["train"], **KW)
    with pytest.raises(MetricError, match="at least 2"):
        measures.fid(np.ones((1, 3)), np.ones((5, 3)))


def test_nans_are_refused(sets):
    bad = sets["synthetic"].copy()
    bad[4, 0, 3, 3] = np.nan
    with pytest.raises(MetricError, match="NaN or inf values in 1 sample.*index 4"):
        M.evaluate(sets["test"], bad, sets["train"], **KW)
    with pytest.raises(MetricError, match="NaN"):
        measures.fid(np.full((4, 2), np.nan), np.ones((4, 2)))


def test_out_of_range_and_wrong_shape_are_refused(sets):
    with pytest.raises(MetricError, match=r"must lie in \[0, 1\]"):
        M.evaluate(sets["test"] * 2 - 1, sets["synthetic"], sets["train"], **KW)
    with pytest.raises(MetricError, match=r"shape \(N, 1, H, W\)"):
        measures.mmd_linear(sets["test"][:, 0], sets["synthetic"][:, 0])
    with pytest.raises(MetricError, match="equal size"):
        measures.mmd_linear(sets["test"][:5], sets["synthetic"][:6])


def test_unknown_extractor_is_refused(sets):
    with pytest.raises(MetricError, match=r"unknown feature extractor 'vgg16'.*random"):
        get_extractor("vgg16")
    with pytest.raises(MetricError, match="unknown feature extractor"):
        M.evaluate(sets["test"], sets["synthetic"], sets["train"], extractor="medicalnet:", **KW)


def test_missing_or_corrupt_weights_file_is_refused(tmp_path, sets):
    missing = tmp_path / "nope" / "resnet_10.pth"
    with pytest.raises(
        MetricError,
        match=r"MedicalNet weights file .*resnet_10.pth.* does not "
        "exist",
    ):
        get_extractor(f"medicalnet:{missing}")
    corrupt = tmp_path / "corrupt.pth"
    corrupt.write_bytes(b"not a checkpoint")
    with pytest.raises(MetricError, match="cannot read MedicalNet weights"):
        get_extractor(f"medicalnet:{corrupt}")


def test_3d_extractor_refuses_2d_images(sets):
    with pytest.raises(MetricError, match="needs volumes"):
        M.evaluate(sets["test"], sets["synthetic"], sets["train"], extractor="random3d", **KW)


@pytest.mark.skipif(
    importlib.util.find_spec("torch_fidelity") is not None, reason="torch-fidelity is installed"
)
def test_inception_without_torch_fidelity_says_what_is_missing():
    with pytest.raises(MetricError, match="torch-fidelity.*extractor=random"):
        get_extractor("inception")


# --------------------------------------------------------------------------------------------
# Stage entry point and CLI
# --------------------------------------------------------------------------------------------


@pytest.fixture
def fake_stage_inputs(monkeypatch, sets):
    """The readers of the preprocessed splits and the synthetic set replaced by in-memory sets
    ([-1, 1] real)."""

    def load_split(params, split, group=None):
        images = sets[split] * 2 - 1
        index = pd.DataFrame(
            {
                "subject": [f"s{i // 2:02d}" for i in range(len(images))],
                "site": [("HH", "Guys", "IOP")[i % 3] for i in range(len(images))],
                "slice": [i % 2 for i in range(len(images))],
            }
        )
        return images.astype(np.float32), index

    monkeypatch.setattr(inputs_module, "load_split", load_split)
    monkeypatch.setattr(
        inputs_module, "load_synthetic", lambda params, group=None: sets["synthetic"]
    )


def test_run_writes_metrics_json(tmp_path, fake_stage_inputs, sets):
    from neurodiff.config import resolve

    params = resolve("smoke", {"derived_dir": str(tmp_path), "device": "cpu"})
    result = M.run(params)
    path = artifacts.metrics_dir(params) / "metrics.json"
    assert result.path == path
    # no temporary files
    assert [p.name for p in path.parent.iterdir()] == ["metrics.json", "run.json"]
    doc = json.loads(path.read_text())
    assert doc["params_hash"] == params.hash()
    assert set(doc["metrics"]) == set(M.METRICS)
    for entry in doc["metrics"].values():
        for key in (
            "value",
            "ci",
            "baseline",
            "baseline_ci",
            "extractor",
            "n_real",
            "n_synthetic",
            "params_hash",
        ):
            assert key in entry
        assert entry["ci"][0] <= entry["value"] <= entry["ci"][1]
    assert doc["metrics"]["fid"]["extractor"].startswith("random-resnet10")
    assert doc["metrics"]["fid"]["n_real"] == doc["metrics"]["fid"]["n_synthetic"] == 24
    assert doc["config"]["n_bootstrap"] == 20
    assert set(r["site"] for r in doc["per_site"]) == {"HH", "Guys", "IOP"}
    closest = doc["memorisation"]["closest"][0]
    assert closest["train_subject"] == f"s{closest['train'] // 2:02d}"
    # real splits were mapped from [-1, 1] to [0, 1]
    np.testing.assert_allclose(result.data.real, sets["test"], atol=1e-6)
    assert "fid" in str(result) and "real vs real" in str(result)


def test_per_group_view_has_stratified_redraws_and_a_test(tmp_path, fake_stage_inputs):
    from neurodiff.config import resolve
    from neurodiff.metrics import groups as groups_module

    params = resolve("smoke", {"derived_dir": str(tmp_path), "device": "cpu"})
    assert list(params["groups"]) == ["control", "patient"]
    table = M.by_group(params)
    assert set(table.index.get_level_values("metric")) == set(groups_module.GROUP_METRICS) | set(
        M.DIFFERENCE_METRICS
    )
    # the difference map's rows are the second group's, against the first
    assert set(table.loc["patient"].index) >= set(M.DIFFERENCE_METRICS)
    assert not set(table.loc["control"].index) & set(M.DIFFERENCE_METRICS)
    fid = table.loc[("patient", "fid")]
    assert "subject-level redraws, stratified by site" in fid["baseline from"]
    assert fid["real ci"][0] <= fid["real vs real"] <= fid["real ci"][1]
    assert 0 < table.loc[("control", "mmd_rbf"), "p"] <= 1
    assert "fid" in groups_module.group_table(table).index
    stored = artifacts.load_by_group(params)
    assert stored["rows_version"] == groups_module.ROWS_VERSION
    # a file of an older make-up (no redraws) is recomputed, not read
    artifacts.write_by_group(params, {"params_hash": params.hash(), "rows": []})
    assert len(M.by_group(params)) == len(table)


def test_cli_metrics_prints_the_table(tmp_path, fake_stage_inputs, capsys):
    from neurodiff.cli import main

    assert main(["metrics", "--profile", "smoke", "-p", f"derived_dir={tmp_path}"]) == 0
    out = capsys.readouterr().out
    assert "memorised_fraction" in out and "metrics.json" in out
    assert (
        main(
            [
                "metrics",
                "--profile",
                "smoke",
                "-p",
                f"derived_dir={tmp_path}",
                "-p",
                "extractor=alexnet",
            ]
        )
        == 2
    )
    assert "unknown feature extractor 'alexnet'" in capsys.readouterr().err


def test_figures_show_the_results(noise_results, sets):

    from neurodiff.viz import metrics as P

    r = noise_results[0.0]
    table = M.comparison_table(r)
    assert "0.036" in table.loc[M.METRICS["mmd_linear"][0], "paper"]
    assert M.METRICS["fid"][0] in table.index and "paper" in table.columns

    bars = P.plot_metric_bars(r)
    titles = [ax.get_title() for ax in bars.axes if ax.get_title()]
    assert len(titles) == len(r.metrics)
    assert titles[0] == f"mmd_linear\n(better: {r.metrics['mmd_linear'].better})"
    heights = [p.get_height() for p in bars.axes[0].patches]
    assert heights == pytest.approx(
        [r.metrics["mmd_linear"].value, r.metrics["mmd_linear"].baseline]
    )

    pairs = P.plot_nearest_neighbours(r, 4)
    assert len([ax for ax in pairs.axes if ax.images]) == 8  # 4 synthetic above 4 training
    shown = pairs.axes[0].images[0].get_array()
    assert shown.shape == sets["synthetic"].shape[2:][::-1]

    dist = P.plot_nn_distances(r)
    assert f"({r.extractor})" in dist.axes[0].get_xlabel()
    assert dist.axes[0].lines[0].get_xdata()[0] == pytest.approx(r.audit.threshold)

    site = P.plot_per_site(r)
    assert len(site.axes) == 2
    hist = P.plot_real_vs_synthetic_histograms(sets["test"], sets["synthetic"])
    assert [ax.get_title() for ax in hist.axes][2] == "mean intensity per image"


def test_interpret_reads_the_real_vs_real_range(noise_results):
    clean, noisy = M.interpret(noise_results[0.0]), M.interpret(noise_results[0.5])
    assert noisy.loc["fid", "reading"] == "outside: worse than real vs real"
    assert noisy.loc["precision", "reading"] == "outside: worse than real vs real"
    assert clean.loc["fid", "reading"] == "inside the real-vs-real range"
    assert "more varied" in noisy.loc["ms_ssim_diversity", "reading"]


def test_calibration_ladder_ranks_known_degradations(sets, extractor, noise_results):
    """More blur or more noise moves every distance further from real; the ladder places a
    lightly noised set near the noise rungs, and its figure draws every metric."""
    ladder = measures.calibration_ladder(
        sets["test"], sets["train"], extractor=extractor, nn_k=3, msssim_pairs=20
    )
    assert list(ladder.index)[0] == "real (undegraded)"
    # on small phantoms half a pixel of blur is within FID's noise; the RBF MMD sees it
    mmd = ladder["mmd_rbf"]
    assert mmd["real (undegraded)"] < mmd["blur sigma 0.5 px"] < mmd["blur sigma 1 px"]
    for metric in ("fid", "mmd_rbf"):
        col = ladder[metric]
        assert col["real (undegraded)"] < col["noise sigma 0.05"] < col["noise sigma 0.1"]
        assert col["real (undegraded)"] < col["blur sigma 1 px"]
    assert ladder.loc["noise sigma 0.1", "coverage"] < ladder.loc["real (undegraded)", "coverage"]
    with pytest.raises(KeyError, match="unknown degradation"):
        measures.degrade(sets["test"], "sharpen")
    from neurodiff.viz import metrics as P

    fig = P.plot_calibration_ladder(ladder, noise_results[0.1])
    assert len([ax for ax in fig.axes if ax.get_title()]) == 6
