"""Sampling speed: a few-step sampler against the many-step reference, same model, batch and device.

The samplers fit the profile's generative process (:func:`neurodiff.config.default_fast_sampler`
and :func:`neurodiff.config.reference_sampler`): for a DDPM model (``process=ddpm``: the
``authors``, ``course`` and ``paper`` profiles) DDIM-50 against ancestral DDPM with all T steps;
for a rectified-flow model (``process=rflow``: the default ``demo`` profile) Euler with 50 steps
against Euler with one step per training timestep (T network evaluations, as DDPM). ``--sampler``
times another few-step sampler of the process (``heun``: 2 x steps - 1 evaluations).

The network is untrained (built from a profile's model parameters): the time per step does not
depend on the weights. Two schedules are timed in one run: T = 1000 (``--reference-T``, the usual
DDPM length, the goal being >= 20x) and the profile's own T (250 for demo and paper). Each
configuration is timed ``--repeats`` times, interleaved, after a warm-up, and the fastest run is
kept (the least disturbed by other processes on a shared machine).

    python benchmarks/sampling_speed.py                      # demo: euler-50 vs euler-1000
    python benchmarks/sampling_speed.py --profile authors    # ddim-50 vs ddpm-1000
    python benchmarks/sampling_speed.py --profile smoke --reference-T 50 --steps 5 --repeats 1

The last line is the ratio at T = 1000, e.g. ``ddim-50 speedup vs ddpm-1000: 21.3x``. The toy
run above (the smoke profile's 16^2 model, T = 50) takes seconds; ``tests/test_benchmarks.py``
runs it on both processes.
"""

from __future__ import annotations

import argparse
import dataclasses
import time

import torch

from neurodiff import config
from neurodiff.device import resolve_device, resolve_precision
from neurodiff.model import build_model
from neurodiff.sampling import generate, network_evaluations


def _time(model, cfg, sampler, steps, batch, device, precision) -> float:
    if device.type == "cuda":
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    generate(
        model,
        cfg,
        batch,
        sampler=sampler,
        steps=steps,
        batch_size=batch,
        seed=0,
        device=device,
        precision=precision,
        progress=False,
    )
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - t0


def plan(cfgs: dict, fast: str, k: int) -> dict[int, list[tuple[str, str, int]]]:
    """Per T: ``(label, sampler, steps)`` of the reference, then the fast sampler, each checked
    against the model by the sampler rules (:func:`neurodiff.config.check_sampler`)."""
    rows = {}
    for T, cfg in cfgs.items():
        ref, ref_steps = config.reference_sampler(cfg.process, T)
        rows[T] = []
        for sampler, steps in ((ref, ref_steps), (fast, k)):
            n = config.check_sampler(cfg.process, cfg.prediction_type, T, sampler, steps)
            rows[T].append((f"{sampler}-{n}", sampler, n))
    return rows


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--profile", default="demo")
    ap.add_argument("-p", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    ap.add_argument("--batch", type=int, default=1, help="samples per batch (both samplers)")
    ap.add_argument(
        "--sampler",
        default=None,
        help="the few-step sampler (default: ddim for process=ddpm, euler for process=rflow)",
    )
    ap.add_argument("--steps", "--ddim-steps", dest="steps", type=int, default=50)
    ap.add_argument(
        "--reference-T", type=int, default=1000, help="timed besides the profile's own T"
    )
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--precision", default="auto", choices=("auto", "fp32", "bf16"))
    ap.add_argument("--threads", type=int, default=0, help="torch CPU threads (0 = default)")
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)

    params = config.resolve(args.profile, args.overrides)
    base = params.stage(config.ModelConfig)
    fast = args.sampler or config.default_fast_sampler(base.process)
    schedules = sorted({args.reference_T, base.timesteps}, reverse=True)
    cfgs = {T: dataclasses.replace(base, timesteps=T) for T in schedules}
    rows = plan(cfgs, fast, args.steps)  # refuses samplers that do not fit, before any work
    device = resolve_device(args.device)
    dtype = resolve_precision(args.precision, device)
    torch.manual_seed(0)
    model = build_model(base).to(device).eval()
    n_params = sum(p.numel() for p in model.parameters())
    shape = (args.batch, 1) + (base.image_size,) * base.spatial_dims
    print(
        f"profile {params.profile} (process={base.process}): {n_params / 1e6:.1f} M parameters, "
        f"batch {shape}, device {device}, {'bf16 autocast' if dtype is not None else 'fp32'}, "
        f"{torch.get_num_threads()} CPU threads"
    )
    # warm-up: allocator, kernels, lazy imports
    generate(
        model,
        cfgs[schedules[-1]],
        args.batch,
        sampler=fast,
        steps=min(5, args.steps),
        batch_size=args.batch,
        device=device,
        precision=args.precision,
        progress=False,
    )
    best: dict[tuple[int, int], float] = {}  # (T, row) -> fastest seconds
    for _ in range(args.repeats):
        for T in schedules:
            for i, (_, sampler, steps) in enumerate(rows[T]):
                s = _time(model, cfgs[T], sampler, steps, args.batch, device, args.precision)
                best[(T, i)] = min(best.get((T, i), float("inf")), s)

    print(f"{'T':>6} {'sampler':>10} {'evals':>6} {'s/batch':>9} {'s/sample':>9} {'ms/eval':>8}")
    for T in schedules:
        for i, (_, sampler, steps) in enumerate(rows[T]):
            s, evals = best[(T, i)], network_evaluations(cfgs[T], sampler, steps)
            print(
                f"{T:>6} {sampler:>10} {evals:>6} {s:>9.2f} {s / args.batch:>9.3f} "
                f"{1000 * s / evals:>8.2f}"
            )
    for T in [*schedules[1:], schedules[0]]:  # the reference T last
        (ref, *_), (label, *_) = rows[T]
        print(f"{label} speedup vs {ref}: {best[(T, 0)] / best[(T, 1)]:.1f}x")


if __name__ == "__main__":
    main()
