"""Why did DDIM with all 250 steps give greyer backgrounds than DDIM-50? Evidence, per variant.

A DDPM model (epsilon prediction, clip_sample on) samples the same seeded noise with DDPM-250,
DDIM-50 and DDIM-250, and DDIM in two variants that differ only in how the clipped clean-image
estimate is used:

- ``clip x0 only`` (MONAI's and diffusers' default, ``use_clipped_model_output=False``): the
  estimate x0_hat is clipped to [-1, 1] but the noise estimate eps_hat is kept as the network gave
  it, so the update mixes a clipped x0_hat with an eps_hat that no longer matches it;
- ``re-derived eps`` (Song et al.'s consistent form; diffusers' ``use_clipped_model_output=True``):
  eps_hat is recomputed from the clipped x0_hat, so x_s stays on the line through x_t;
- ``no clipping``.

For each: the mean intensity of the background (pixels that are background, < 0.02, in the mean
real test image; real data: about 0) and the FID against the test split in stage 5's features.

    python benchmarks/ddim_background.py data/derived/recipes/authors   # a trained model folder

The rows go to ``benchmarks/results/ddim_background.json`` (chapter 4 shows them) with the CPU
model and the command. The model must be a DDPM model (``process=ddpm``: the recipe study's
``authors`` model, the ``authors``/``course`` profiles); a rectified-flow model (the ``demo``
profile's) has no DDIM and is refused before any sampling, by the sampler rules of
:func:`neurodiff.config.check_sampler`. At toy size (``tests/test_benchmarks.py``: a 2-step
smoke model, T = 50, a few samples, the output elsewhere) the same code runs in seconds::

    python benchmarks/ddim_background.py <smoke train folder> --profile smoke \
        -p derived_dir=<...> -p cohort=<...> -n 4 --steps 5 --out /tmp/ddim_background.json
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from pathlib import Path

import numpy as np
import torch

from neurodiff import artifacts, config, sampling
from neurodiff.features import get_extractor
from neurodiff.intensity import to_unit_range
from neurodiff.io import atomic_write_json
from neurodiff.measures import fid
from neurodiff.model import load_ema_model
from neurodiff.sample import background_mean
from neurodiff.sampling import generate


def variants(cfg: config.ModelConfig, steps: int) -> dict[str, tuple[str, int, str]]:
    """label -> (sampler, steps, DDIM clip mode), each checked against the model by the sampler
    rules (a rectified-flow model, or ``steps`` > T, is refused here, before any sampling)."""
    T = cfg.timesteps
    out = {
        f"ddpm-{T}": ("ddpm", T, "x0"),
        f"ddim-{steps}, clip x0 only": ("ddim", steps, "x0"),
        f"ddim-{T}, clip x0 only": ("ddim", T, "x0"),
        f"ddim-{T}, re-derived eps": ("ddim", T, "rederive"),
        f"ddim-{T}, no clipping": ("ddim", T, "none"),
        f"ddim-{steps}, re-derived eps": ("ddim", steps, "rederive"),
    }
    for sampler, n, _ in out.values():
        config.check_sampler(cfg.process, cfg.prediction_type, T, sampler, n)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("train_dir", type=Path, help="a training run folder (checkpoints inside)")
    ap.add_argument("--profile", default="demo", help="profile whose test split is the reference")
    ap.add_argument("-p", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    ap.add_argument("-n", type=int, default=64, help="samples per variant")
    ap.add_argument("--steps", type=int, default=50, help="the few-step DDIM's steps")
    ap.add_argument(
        "--out", type=Path, default=Path(__file__).parent / "results" / "ddim_background.json"
    )
    args = ap.parse_args(argv)
    model, cfg, _ = load_ema_model(args.train_dir, "cpu")
    try:
        rows_of = variants(cfg, args.steps)
    except config.ConfigError as exc:
        ap.error(
            f"{args.train_dir} cannot be sampled with DDPM and DDIM-{args.steps} "
            f"(process={cfg.process!r}, T = {cfg.timesteps}): {exc}"
        )
    overrides = dict(config.parse_override(o) for o in args.overrides)
    params = config.resolve(args.profile, {**overrides, "image_size": cfg.image_size})
    test = artifacts.load_split(params, "test", group="control")[0]  # the study's images
    test = to_unit_range(np.asarray(test, dtype=np.float32))
    extractor = get_extractor("random", seed=0)
    real_f = extractor(test[: args.n])
    rows = [{"variant": "real test images", "background_mean": background_mean(test, test)}]
    print(f"real test: background mean {rows[0]['background_mean']:.4f}")
    ddim = sampling.SAMPLER_SPECS["ddim"]
    for label, (sampler, steps, mode) in rows_of.items():

        def factory(c, mode=mode):
            sched = ddim.scheduler(c)
            sched.clip_mode = mode
            return sched

        # the DDIM entry of the dispatch table, with this variant's clipping, for this call only
        sampling.SAMPLER_SPECS["ddim"] = dataclasses.replace(ddim, scheduler=factory)
        t0 = time.perf_counter()
        try:
            x = generate(
                model, cfg, args.n, sampler=sampler, steps=steps, batch_size=32, progress=False
            )
        finally:
            sampling.SAMPLER_SPECS["ddim"] = ddim
        x = to_unit_range(x.numpy())
        rows.append(
            {
                "variant": label,
                "background_mean": background_mean(x, test),
                "fid": fid(real_f, extractor(x)),
                "seconds": time.perf_counter() - t0,
            }
        )
        r = rows[-1]
        print(f"{label:28s} background {r['background_mean']:.4f}  FID {r['fid']:.4f}")
    from recipes import cpu_model  # same folder

    atomic_write_json(
        args.out,
        {
            "cpu": cpu_model(),
            "model": str(args.train_dir),
            "n": args.n,
            "command": "python benchmarks/ddim_background.py " + " ".join(argv or sys.argv[1:]),
            "rows": rows,
        },
    )
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    torch.set_num_threads(torch.get_num_threads())
    raise SystemExit(main())
