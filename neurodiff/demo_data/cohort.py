"""Writing the simulated cohort: subjects drawn, volumes rendered in workers, BIDS files out."""

from __future__ import annotations

import contextlib
import json
import logging
import multiprocessing as mp
import os
import sys
import threading
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from .. import __version__
from ..errors import ConfigError
from ..io import atomic_dir
from .anatomy import (
    _DEFORM_SD_MM,
    _LATTICE_SPACING_MM,
    _NECK_CENTRE_MM,
    _NECK_SEMI_AXES_MM,
    _NECK_Z_MM,
    _RIM_MM,
    _VENTRICLE_CENTRE,
    _VENTRICLE_WIDTH,
    _gm_regions,
    _render,
    _site_base,
    _site_grid,
    _Subject,
    _templates,
    _write_nifti,
)
from .protocols import BVFTD_REGIONS, GENERATOR_NAME, SiteProtocol, site_protocols

__all__ = ["make_demo_cohort", "write_cohort"]

log = logging.getLogger("neurodiff.demo_data")

# State shared with forked workers (set before the pool starts; read-only in workers).
_STATE: dict[str, Any] = {}


def _single_thread() -> contextlib.AbstractContextManager[Any]:
    """One BLAS thread: the matrix products then give the same bits whatever the machine load.

    (BLAS splits work between threads differently with their number, and fused multiply-adds
    round differently in another order, so the volumes would depend on the thread count.)
    """
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # pragma: no cover - threadpoolctl comes with nilearn's scikit-learn
        return contextlib.nullcontext()
    return threadpool_limits(1)


def _limit_threads() -> None:
    _single_thread()


def _work(index: int) -> int:
    st = _STATE
    subject: _Subject = st["subjects"][index]
    site = st["sites"][subject.site]
    data = _render(subject, site, st["bases"][subject.site], st["templates"], st["resolution"])
    _, affine = _site_grid(site, st["resolution"])
    pid = subject.participant_id
    _write_nifti(st["root"] / pid / "anat" / f"{pid}_T1w.nii.gz", data, affine)
    return index


#: Random streams of a cohort's subjects: (demographics of controls, of patients, anatomy of
#: controls, of patients). ``new_subjects`` uses its own four, so that no new subject repeats a
#: subject of the cohort made with the same seed.
_STREAMS = {False: (0, 1, 2, 3), True: (4, 5, 6, 7)}


def _draw_subjects(
    subjects: int, patients: int, n_sites: int, seed: int, new_subjects: bool = False
) -> list[_Subject]:
    width = max(3, len(str(subjects + patients)))
    prefix = "sub-new" if new_subjects else "sub-"
    d_control, d_patient, a_control, a_patient = _STREAMS[new_subjects]
    out = []
    rng = np.random.default_rng([seed, d_control])
    sites = rng.permutation(np.arange(subjects) % n_sites)
    ages = rng.integers(20, 87, subjects)
    sexes = rng.choice(["F", "M"], subjects)
    for i in range(subjects):
        out.append(
            _Subject(
                f"{prefix}{i + 1:0{width}d}",
                int(sites[i]),
                int(ages[i]),
                str(sexes[i]),
                "control",
                (seed, a_control, i),
            )
        )
    if patients:
        rng = np.random.default_rng([seed, d_patient])
        sites = rng.permutation(np.arange(patients) % n_sites)
        ages = np.clip(np.rint(rng.normal(62.0, 8.0, patients)), 45, 80).astype(int)
        sexes = np.where(rng.uniform(size=patients) < 0.6, "M", "F")
        for j in range(patients):
            out.append(
                _Subject(
                    f"{prefix}{subjects + j + 1:0{width}d}",
                    int(sites[j]),
                    int(ages[j]),
                    str(sexes[j]),
                    "patient",
                    (seed, a_patient, j),
                )
            )
    return out


def _description(
    subjects: int, sites: Sequence[SiteProtocol], seed: int, patients: int, resolution: int
) -> dict[str, Any]:
    import nilearn

    how = (
        "SIMULATED DATA - not images of real people. Each volume is built from the MNI ICBM152 "
        "2009a nonlinear symmetric templates (T1, grey/white-matter maps, brain mask) shipped "
        f"with nilearn {nilearn.__version__}, remapped to a site's tissue contrast, with a simple "
        "layered head (CSF rim, skull with marrow, scalp; thickness and contrast per site) grown "
        "from the brain mask, on a neck (an elliptical column of muscle with a skin rim, down to "
        "the edge of the field of view; no face). Each "
        "subject gets age-linked grey-matter thinning and ventricular enlargement, a smooth "
        "random deformation, and a random head size, rotation and translation; each site its "
        "own voxel size, field of view, storage orientation, on-disk dtype and intensity scale, "
        "bias field and Rician noise."
    )
    if patients:
        how += (
            " Subjects with group 'patient' add a pattern modelled on behavioural-variant "
            "frontotemporal dementia: asymmetric grey-matter loss in frontal (dorsolateral, "
            "medial, orbitofrontal, anterior cingulate), insular and anterior temporal cortex, "
            "and extra ventricular enlargement."
        )
    return {
        "Name": "neurodiff simulated multi-site T1w cohort (SIMULATED DATA)",
        "BIDSVersion": "1.9.0",
        "DatasetType": "raw",
        "License": "The images derive from the MNI ICBM152 2009a templates; see their copyright "
        "notice (McConnell Brain Imaging Centre, Montreal Neurological Institute).",
        "Authors": ["neurodiff demo-data (simulation)"],
        "HowToAcknowledge": "Cite the MNI ICBM152 2009 templates (Fonov et al. 2009, 2011).",
        "ReferencesAndLinks": [
            "Fonov V, Evans A, McKinstry R, Almli C, Collins D. Unbiased nonlinear average "
            "age-appropriate brain templates from birth to adulthood. NeuroImage 47:S102 (2009).",
            "Fonov V et al. Unbiased average age-appropriate atlases for pediatric studies. "
            "NeuroImage 54(1):313-327 (2011).",
        ],
        "GeneratedBy": [
            {
                "Name": GENERATOR_NAME,
                "Version": __version__,
                "Description": how,
            }
        ],
        "SourceDatasets": [
            {
                "Description": "MNI ICBM152 2009a nonlinear symmetric templates as shipped inside "
                f"the nilearn {nilearn.__version__} wheel",
            }
        ],
        "Simulated": True,
        "SimulationParameters": {
            "subjects": subjects,
            "patients": patients,
            "sites": len(sites),
            "seed": seed,
            "resolution_mm": resolution,
            "site_protocols": [asdict(s) for s in sites],
            "head_csf_rim_mm": _RIM_MM,
            "neck": {
                "centre_xy_mm": list(_NECK_CENTRE_MM),
                "semi_axes_xy_mm": list(_NECK_SEMI_AXES_MM),
                "full_below_z_mm": _NECK_Z_MM[0],
                "none_above_z_mm": _NECK_Z_MM[1],
            },
            "ventricle_centre_mm": _VENTRICLE_CENTRE.tolist(),
            "ventricle_width_mm": _VENTRICLE_WIDTH.tolist(),
            "deformation_lattice_mm": _LATTICE_SPACING_MM,
            "deformation_sd_mm": _DEFORM_SD_MM,
            "grey_matter_loss_at_86_years": 0.35,
            "bvftd_regions": [
                {"name": n, "centre_mm_right": list(c), "width_mm": list(w)}
                for n, c, w in BVFTD_REGIONS
            ]
            if patients
            else [],
            "bvftd_regional_loss": [0.35, 0.6] if patients else [],
        },
    }


_PARTICIPANTS_JSON = {
    "participant_id": {"Description": "subject label"},
    "site": {
        "Description": "simulated acquisition site (see SimulationParameters in "
        "dataset_description.json)"
    },
    "age": {"Description": "simulated age", "Units": "year"},
    "sex": {"Description": "simulated sex", "Levels": {"F": "female", "M": "male"}},
    "group": {
        "Description": "diagnostic group",
        "Levels": {"control": "healthy control", "patient": "simulated bvFTD-like atrophy pattern"},
    },
    "pool": {
        "Description": "chapter 6's pool of the subject (each subject in exactly one)",
        "Levels": {
            "pretrain": "healthy cohort the generator is pretrained on",
            "train": "training pool the draws are taken from",
            "validation": "tunes the classifiers' hyper-parameters",
            "test": "judges every arm",
            "ood": "test subjects of a site no other pool contains",
        },
    },
}


def _is_demo_cohort(path: Path) -> bool:
    try:
        desc = json.loads((path / "dataset_description.json").read_text())
        return desc.get("GeneratedBy", [{}])[0].get("Name") == GENERATOR_NAME
    except (OSError, ValueError, AttributeError, IndexError, TypeError):
        return False


def make_demo_cohort(
    out: str | Path,
    subjects: int = 48,
    sites: int = 3,
    seed: int = 0,
    patients: int = 24,
    *,
    new_subjects: bool = False,
    resolution: int = 1,
    workers: int | None = None,
    progress: bool = True,
) -> Path:
    """Write the simulated multi-site BIDS cohort to ``out`` and return its path.

    Parameters
    ----------
    out : str or Path
        Output folder. Replaced atomically; an existing folder is replaced only if it is empty
        or a cohort written by this function.
    subjects : int
        Healthy subjects (``sub-001`` ...), spread evenly over the sites.
    sites : int
        Number of sites (1-26): A, B and C are :data:`SITE_PROTOCOLS`, more are variations.
    seed : int
        Same seed, same bytes; another seed, other subjects.
    patients : int
        Extra subjects with the bvFTD-like pattern (adds a ``group`` column; 0 = controls only).
    new_subjects : bool
        Draw the subjects from other random streams and name them ``sub-new*``: *new* subjects
        of the same distribution, none of them in the cohort of the same seed. Chapter 6 uses
        such a cohort for subjects that must not repeat the cohort's.
    resolution : {1, 2}
        Template resolution in mm; 2 also doubles every site's voxel size (8x fewer voxels), a
        fast mode for tests.
    workers : int, optional
        Processes rendering volumes (default: up to 2 on Linux, forked; 1 elsewhere, or when
        the calling process runs other threads). The output does not depend on it.
    progress : bool
        Show a progress bar.

    Returns
    -------
    Path
        ``out``, holding ``dataset_description.json``, ``participants.tsv``,
        ``participants.json``, ``README`` and ``sub-*/anat/sub-*_T1w.nii.gz``.
    """
    protocols = _check_arguments(out, subjects, sites, seed, patients, resolution)
    out = Path(out)
    people = _draw_subjects(int(subjects), int(patients), int(sites), int(seed), bool(new_subjects))
    workers = _n_workers(workers, len(people))
    log.info(
        "simulating %d subjects (%d patients) at %d sites, seed %d, %d worker(s)",
        len(people),
        patients,
        sites,
        seed,
        workers,
    )
    desc = _description(int(subjects), protocols, int(seed), int(patients), resolution)
    desc["SimulationParameters"]["new_subjects"] = bool(new_subjects)
    command = (
        f"{GENERATOR_NAME} --subjects {subjects} --sites {sites} --seed {seed}"
        + f" --patients {patients}"
        + (" --new-subjects" if new_subjects else "")
    )
    write_cohort(out, people, protocols, desc, command, resolution, workers, progress)
    return out


def write_cohort(
    out: Path,
    people: list[_Subject],
    protocols: Sequence[SiteProtocol],
    desc: dict[str, Any],
    command: str,
    resolution: int,
    workers: int,
    progress: bool,
    extra: dict[str, list] | None = None,
) -> None:
    """Render ``people`` and write the BIDS folder ``out`` atomically (volumes, tables with the
    ``extra`` columns, ``dataset_description.json`` and a README naming ``command``)."""
    tpl = _templates(resolution)
    bases = [_site_base(tpl, s) for s in protocols]
    if any(p.group == "patient" for p in people):
        _gm_regions(resolution)  # once, before the workers fork
    with atomic_dir(out) as root:
        _STATE.update(
            subjects=people,
            sites=protocols,
            bases=bases,
            templates=tpl,
            resolution=resolution,
            root=root,
        )
        try:
            _render_all(len(people), workers, progress)
        finally:
            _STATE.clear()
        patients = sum(p.group == "patient" for p in people)
        _write_tables(root, people, protocols, patients, extra)
        (root / "dataset_description.json").write_text(json.dumps(desc, indent=2) + "\n")
        (root / "README").write_text(
            "SIMULATED DATA - not images of real people.\n\n"
            + desc["GeneratedBy"][0]["Description"]
            + "\n\n"
            f"Written by `{command}`"
            + (f" at {resolution} mm (fast mode)" if resolution != 1 else "")
            + ".\n"
        )


def _check_arguments(out, subjects, sites, seed, patients, resolution) -> tuple[SiteProtocol, ...]:
    """Every argument checked before any work; returns the site protocols."""
    for name, value, lo in (
        ("subjects", subjects, 1),
        ("sites", sites, 1),
        ("seed", seed, 0),
        ("patients", patients, 0),
    ):
        if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < lo:
            raise ConfigError(f"{name} must be an integer >= {lo}; got {value!r}", parameter=name)
    protocols = site_protocols(int(sites))
    if sites > subjects:
        raise ConfigError(
            f"sites ({sites}) must not exceed subjects ({subjects}): every site "
            "needs at least one subject",
            parameter="sites",
        )
    if resolution not in (1, 2):
        raise ConfigError(
            f"resolution must be 1 or 2 (mm); got {resolution!r}", parameter="resolution"
        )
    out = Path(out)
    if out.exists():
        if not out.is_dir():
            raise ConfigError(
                f"--out {out} is a file; expected a folder for the cohort",
                parameter="out",
                path=out,
            )
        if any(out.iterdir()) and not _is_demo_cohort(out):
            raise ConfigError(
                f"--out {out} exists and is not a cohort written by "
                f"'{GENERATOR_NAME}'; refusing to replace it. Choose a new or "
                "empty folder.",
                parameter="out",
                path=out,
            )
    return protocols


def _n_workers(workers: int | None, n: int) -> int:
    """Rendering processes: up to 2 forked on Linux, 1 elsewhere or beside other threads."""
    if workers is None:
        workers = min(2, os.cpu_count() or 1) if sys.platform.startswith("linux") else 1
    workers = max(1, min(int(workers), n))
    if workers > 1 and threading.active_count() > 1:
        # forking a multi-threaded process (a Jupyter kernel, say) can deadlock
        log.info("other threads are running: rendering in this process only")
        workers = 1
    return workers


def _render_all(n: int, workers: int, progress: bool) -> None:
    """Render and write every subject of ``_STATE`` (in forked workers when ``workers`` > 1)."""
    from tqdm.auto import tqdm

    bar = tqdm(total=n, desc="demo cohort", unit="subject", disable=not progress)
    if workers > 1:
        ctx = mp.get_context("fork")
        with ProcessPoolExecutor(workers, mp_context=ctx, initializer=_limit_threads) as pool:
            for _ in pool.map(_work, range(n)):
                bar.update()
    else:
        with _single_thread():
            for i in range(n):
                _work(i)
                bar.update()
    bar.close()


def _write_tables(
    root: Path, people: list[_Subject], protocols, patients: int, extra: dict | None = None
) -> None:
    """``participants.tsv`` and ``participants.json`` (with the ``extra`` columns, described
    in :data:`_PARTICIPANTS_JSON`)."""
    import pandas as pd

    rows = {
        "participant_id": [p.participant_id for p in people],
        "site": [protocols[p.site].name for p in people],
        "age": [p.age for p in people],
        "sex": [p.sex for p in people],
    }
    if patients:
        rows["group"] = [p.group for p in people]
    rows.update(extra or {})
    pd.DataFrame(rows).to_csv(root / "participants.tsv", sep="\t", index=False, lineterminator="\n")
    pjson = {k: v for k, v in _PARTICIPANTS_JSON.items() if k in rows}
    (root / "participants.json").write_text(json.dumps(pjson, indent=2) + "\n")
