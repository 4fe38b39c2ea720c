"""Sampling speed: DDIM-50 against ancestral DDPM with all T steps, same model, batch and device.

The network is untrained (built from a profile's model parameters): the time per step does not
depend on the weights. Two schedules are timed in one run: T = 1000 (the usual DDPM length, the
goal being >= 20x) and the profile's own T (250 for demo and paper). Each configuration is timed
``--repeats`` times, interleaved, after a warm-up, and the fastest run is kept (the least disturbed
by other processes on a shared machine).

    python benchmarks/sampling_speed.py --profile demo --batch 1 --repeats 2

The last line is the ratio at T = 1000, e.g. ``ddim-50 speedup vs ddpm-1000: 21.3x``.
"""

from __future__ import annotations

import argparse
import dataclasses
import time

import torch

from neurodiff import config
from neurodiff.device import resolve_device, resolve_precision
from neurodiff.model import build_model
from neurodiff.sampling import generate


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


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--profile", default="demo")
    ap.add_argument("--batch", type=int, default=1, help="samples per batch (both samplers)")
    ap.add_argument("--ddim-steps", type=int, default=50)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--precision", default="auto", choices=("auto", "fp32", "bf16"))
    ap.add_argument("--threads", type=int, default=0, help="torch CPU threads (0 = default)")
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)

    params = config.resolve(args.profile)
    base = params.stage(config.ModelConfig)
    device = resolve_device(args.device)
    dtype = resolve_precision(args.precision, device)
    torch.manual_seed(0)
    model = build_model(base).to(device).eval()
    n_params = sum(p.numel() for p in model.parameters())
    shape = (args.batch, 1) + (base.image_size,) * base.spatial_dims
    print(
        f"profile {params.profile}: {n_params / 1e6:.1f} M parameters, batch {shape}, "
        f"device {device}, {'bf16 autocast' if dtype is not None else 'fp32'}, "
        f"{torch.get_num_threads()} CPU threads"
    )

    schedules = sorted({1000, base.timesteps}, reverse=True)
    cfgs = {T: dataclasses.replace(base, timesteps=T) for T in schedules}
    k = args.ddim_steps
    # warm-up: allocator, kernels, lazy imports
    generate(
        model,
        cfgs[schedules[-1]],
        args.batch,
        sampler="ddim",
        steps=min(5, k),
        batch_size=args.batch,
        device=device,
        precision=args.precision,
        progress=False,
    )
    best: dict[tuple[int, str], float] = {}
    for _ in range(args.repeats):
        for T in schedules:
            for sampler, steps in (("ddpm", None), ("ddim", k)):
                s = _time(model, cfgs[T], sampler, steps, args.batch, device, args.precision)
                key = (T, sampler)
                best[key] = min(best.get(key, float("inf")), s)

    print(f"{'T':>6} {'sampler':>10} {'evals':>6} {'s/batch':>9} {'s/sample':>9} {'ms/eval':>8}")
    for T in schedules:
        for sampler, evals in (("ddpm", T), ("ddim", k)):
            s = best[(T, sampler)]
            print(
                f"{T:>6} {sampler:>10} {evals:>6} {s:>9.2f} {s / args.batch:>9.3f} "
                f"{1000 * s / evals:>8.2f}"
            )
    for T in schedules[1:]:
        print(f"ddim-{k} speedup vs ddpm-{T}: {best[(T, 'ddpm')] / best[(T, 'ddim')]:.1f}x")
    T = schedules[0]
    print(f"ddim-{k} speedup vs ddpm-{T}: {best[(T, 'ddpm')] / best[(T, 'ddim')]:.1f}x")


if __name__ == "__main__":
    main()
