"""Training throughput: neurodiff's training step against a plain MONAI-tutorial-style loop.

Both train the same UNet (the profile's ``ModelConfig``) on the same images with the same
per-step batch, in one process, alternating in rounds so that a change of machine load hits both:

- **plain loop**: what the MONAI DDPM tutorials do, in fp32 -- ``DataLoader(shuffle=True)``,
  ``randn_like`` noise, ``DiffusionInferer``, MSE loss, Adam, ``loss.item()`` every step;
- **neurodiff**: :func:`neurodiff.train.train` itself (precision, channels_last and compile as
  the profile says, EMA, gradient clipping, LR schedule, loss log included), timed between
  optimiser steps through its ``callback``, checkpoints and previews switched off.

Images per second of each, the ratio, and on CUDA the achieved TFLOP/s (forward + backward FLOPs
counted by :func:`neurodiff.model.estimate_train_flops`), the MFU against the GPU's dense bf16
peak and the peak GPU memory. ``--variants`` times neurodiff's step with each option switched
against the profile: ``fp32`` (no bf16 autocast), ``channels_last`` (``channels_last_3d`` for
volumes), ``compile`` (``torch.compile``), ``no_flash`` (MONAI's plain attention instead of
``scaled_dot_product_attention``), ``no_fused`` (the per-tensor optimiser update), and
``microbatch`` (the effective batch as one micro-batch: ``batch_size x grad_accum`` with
``grad_accum`` 1 -- the same effective batch and the same maths, one pass instead of several).
``--sampling`` also times one sample of the profile's model with the many-step reference and the
few-step sampler of its process (:func:`neurodiff.config.reference_sampler`,
:func:`neurodiff.config.default_fast_sampler`): DDPM (all T steps) and DDIM-50 for a DDPM model,
Euler with T and with 50 steps for a rectified-flow one;
``--max-batch`` (CUDA) finds the largest micro-batch that fits. The last line is the ratio, e.g.
``speedup vs plain loop: 1.62x``.

Examples::

    python benchmarks/train_throughput.py                       # demo profile, this CPU
    python benchmarks/train_throughput.py --variants            # + what each option adds
    python benchmarks/train_throughput.py --profile paper --steps 20   # the paper's 3D model (GPU)
    python benchmarks/train_throughput.py --profile paper --variants --sampling --max-batch
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from neurodiff import config
from neurodiff.config import ModelConfig, TrainConfig
from neurodiff.device import resolve_device, resolve_precision
from neurodiff.model import build_model, estimate_train_flops
from neurodiff.train import TrainState, train

#: Dense bf16 tensor-core peaks (TFLOP/s) for the MFU; --peak-tflops overrides.
PEAK_BF16_TFLOPS = {
    "H100": 989.0,
    "H200": 989.0,
    "GH200": 989.0,
    "A100": 312.0,
    "L40S": 362.0,
    "A10": 125.0,
    "L4": 121.0,
    "RTX 4090": 165.0,
}


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def load_images(params: config.Params, n_min: int) -> tuple[np.ndarray, str]:
    """The preprocessed training split if there is one, else random images of the same shape."""
    try:
        from neurodiff.artifacts import load_split

        images, _ = load_split(params, "train")
        if len(images) >= n_min:
            return images, f"preprocessed training split ({len(images)} images)"
    except Exception as exc:  # no preprocessed data here: the throughput does not depend on it
        reason = type(exc).__name__
    else:
        reason = "too few images"
    shape = (max(n_min, 64), 1) + (params.image_size,) * params.spatial_dims
    rng = np.random.default_rng(0)
    images = np.tanh(rng.standard_normal(shape, dtype=np.float32))
    return images, f"random images {shape[1:]} ({reason} for real data)"


def plain_loop(
    params: config.Params, images: np.ndarray, steps: int, warmup: int, device: torch.device
) -> float:
    """Images/s of a MONAI-tutorial-style fp32 training loop (``steps`` timed after ``warmup``)."""
    from monai.inferers import DiffusionInferer
    from monai.networks.nets import DiffusionModelUNet
    from monai.networks.schedulers import DDPMScheduler

    mcfg: ModelConfig = params.stage(ModelConfig)
    tcfg: TrainConfig = params.stage(TrainConfig)
    torch.manual_seed(0)
    model = DiffusionModelUNet(
        spatial_dims=mcfg.spatial_dims,
        in_channels=1,
        out_channels=1,
        channels=mcfg.channels,
        attention_levels=mcfg.attention_levels,
        num_res_blocks=mcfg.num_res_blocks,
        num_head_channels=mcfg.num_head_channels,
        norm_num_groups=mcfg.norm_num_groups,
    ).to(device)
    scheduler = DDPMScheduler(num_train_timesteps=mcfg.timesteps)
    optimizer = torch.optim.Adam(params=model.parameters(), lr=tcfg.lr)
    inferer = DiffusionInferer(scheduler)
    loader = torch.utils.data.DataLoader(
        torch.from_numpy(images), batch_size=tcfg.batch_size, shuffle=True, drop_last=True
    )
    done, t0 = 0, 0.0
    model.train()
    while done < warmup + steps:
        for batch in loader:
            if done == warmup:
                _sync(device)
                t0 = time.perf_counter()
            x = batch.to(device)
            optimizer.zero_grad(set_to_none=True)
            noise = torch.randn_like(x)
            t = torch.randint(0, mcfg.timesteps, (x.shape[0],), device=device).long()
            noise_pred = inferer(inputs=x, diffusion_model=model, noise=noise, timesteps=t)
            loss = torch.nn.functional.mse_loss(noise_pred.float(), noise.float())
            loss.backward()
            optimizer.step()
            loss.item()
            done += 1
            if done == warmup + steps:
                break
    _sync(device)
    return steps * tcfg.batch_size / (time.perf_counter() - t0)


def neurodiff_loop(
    params: config.Params,
    images: np.ndarray,
    steps: int,
    warmup: int,
    device: torch.device,
    **overrides,
) -> float:
    """Images/s of :func:`neurodiff.train.train` between optimiser steps ``warmup`` and the end."""
    stamps: list[float] = []
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)

    def clock(state: TrainState) -> None:
        if state.step >= warmup:
            _sync(device)
            stamps.append(time.perf_counter())

    p = config.Params(
        {
            **params.to_dict(),
            "train_steps": warmup + steps,
            "checkpoint_every": 10**9,
            "preview_every": 0,
            "resume": False,
            "device": str(device),
            **overrides,
        }
    )
    labels = np.arange(len(images)) % len(p.groups) if p.groups else None  # a conditional model
    with tempfile.TemporaryDirectory() as tmp:
        result = train(p, images, Path(tmp), labels=labels, progress=False, callback=clock)
    PEAK_MEMORY[str(overrides)] = (
        torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else None
    )
    return steps * result.effective_batch / (stamps[-1] - stamps[0]) if len(stamps) > 1 else 0.0


#: Peak GPU memory (GiB) of the last timed run of each variant, keyed by its overrides.
PEAK_MEMORY: dict[str, float | None] = {}


def sampling_rows(mcfg: ModelConfig, fast_steps: int = 50) -> dict[str, tuple[str, int]]:
    """``label -> (sampler, steps)`` that :func:`time_sampling` times: the many-step reference of
    the model's process and its few-step sampler with ``min(fast_steps, T)`` steps (DDPM-T and
    DDIM-50 for a DDPM model; Euler-T and Euler-50 for rectified flow), checked by the sampler
    rules."""
    T = mcfg.timesteps
    pairs = [
        config.reference_sampler(mcfg.process, T),
        (config.default_fast_sampler(mcfg.process), min(fast_steps, T)),
    ]
    rows = {}
    for sampler, steps in pairs:
        n = config.check_sampler(mcfg.process, mcfg.prediction_type, T, sampler, steps)
        rows[f"{sampler}-{n}"] = (sampler, n)
    return rows


def time_sampling(params: config.Params, device: torch.device) -> dict[str, float]:
    """Seconds for one sample (a volume for 3D profiles) of the profile's UNet (random weights:
    speed does not depend on them) with each sampler of :func:`sampling_rows`, after one untimed
    warm-up call each."""
    from neurodiff.sampling import generate

    mcfg: ModelConfig = params.stage(ModelConfig)
    model = build_model(mcfg, flash_attention=device.type == "cuda").to(device).eval()
    rows = sampling_rows(mcfg)
    out = {}
    for label, (sampler, steps) in rows.items():
        kwargs = dict(sampler=sampler, steps=steps, batch_size=1, device=device, progress=False)
        generate(model, mcfg, 1, precision=params.precision, **kwargs)
        _sync(device)
        t0 = time.perf_counter()
        generate(model, mcfg, 1, precision=params.precision, **kwargs)
        _sync(device)
        out[label] = time.perf_counter() - t0
    return out


def max_micro_batch(params: config.Params, device: torch.device, limit: int = 64) -> int:
    """The largest micro-batch (powers of two up to ``limit``) whose bf16 training step fits in
    the GPU's memory; 0 on a CPU."""
    if device.type != "cuda":
        return 0
    images, _ = load_images(params, 2 * limit)
    best, batch = 0, 1
    while batch <= limit:
        try:
            neurodiff_loop(params, images, 1, 1, device, batch_size=batch, grad_accum=1)
        except torch.OutOfMemoryError:
            break
        finally:
            torch.cuda.empty_cache()
        best, batch = batch, batch * 2
    return best


def _peak(device: torch.device, override: float | None) -> float | None:
    if override:
        return override
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    for key, value in PEAK_BF16_TFLOPS.items():
        if key in name:
            return value
    return None


def main(argv: list[str] | None = None) -> float:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--profile", default="demo")
    ap.add_argument("-p", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    ap.add_argument("--steps", type=int, default=12, help="timed optimiser steps per round")
    ap.add_argument("--warmup", type=int, default=3, help="untimed steps first")
    ap.add_argument("--rounds", type=int, default=2, help="alternating rounds (median taken)")
    ap.add_argument(
        "--variants",
        nargs="?",
        const="fp32,channels_last,compile,no_flash,no_fused,microbatch",
        default="",
        help="also time neurodiff's step with these changes (comma-separated, default all: "
        "fp32,channels_last,compile,no_flash,no_fused,microbatch)",
    )
    ap.add_argument(
        "--sampling",
        action="store_true",
        help="also time sampling: DDPM-T and DDIM-50 (Euler-T and Euler-50 for rectified flow)",
    )
    ap.add_argument(
        "--max-batch", action="store_true", help="find the largest micro-batch that fits (CUDA)"
    )
    ap.add_argument(
        "--peak-tflops",
        type=float,
        default=None,
        help="dense bf16 peak of the GPU for the MFU (default: from its name)",
    )
    args = ap.parse_args(argv)

    params = config.resolve(args.profile, args.overrides)
    device = resolve_device(params.device)
    mcfg: ModelConfig = params.stage(ModelConfig)
    tcfg: TrainConfig = params.stage(TrainConfig)
    dtype = resolve_precision(tcfg.precision, device, training=True)
    images, source = load_images(params, tcfg.batch_size * tcfg.grad_accum * 2)
    flops_image = estimate_train_flops(mcfg, 1)
    n_params = sum(p.numel() for p in build_model(mcfg).parameters())
    print(
        f"profile {params.profile}: {mcfg.spatial_dims}D {mcfg.image_size}^{mcfg.spatial_dims}, "
        f"channels {list(mcfg.channels)}, {n_params / 1e6:.2f} M parameters, "
        f"{flops_image / 1e9:.2f} GFLOP per image (forward + backward)"
    )
    print(
        f"device {device}"
        + (
            f" ({torch.cuda.get_device_name(device)})"
            if device.type == "cuda"
            else f" ({torch.get_num_threads()} threads)"
        )
        + f"; per-step batch {tcfg.batch_size} x accumulation {tcfg.grad_accum}; data: {source}"
    )

    variants: dict[str, dict] = {"neurodiff": {}}
    known = {
        "fp32": ("neurodiff fp32", {"precision": "fp32"}),
        "channels_last": ("neurodiff + channels_last", {"channels_last": True}),
        "compile": ("neurodiff + compile", {"compile": True}),
        "no_flash": ("neurodiff, plain attention", {"flash_attention": "off"}),
        "no_fused": ("neurodiff, per-tensor optimiser", {"fused_optimizer": False}),
        "microbatch": (
            f"neurodiff, micro-batch {tcfg.batch_size * tcfg.grad_accum} x 1",
            {"batch_size": tcfg.batch_size * tcfg.grad_accum, "grad_accum": 1},
        ),
    }
    for key in filter(None, args.variants.split(",")):
        if key not in known:
            ap.error(f"--variants: unknown {key!r}; expected some of {sorted(known)}")
        variants[known[key][0]] = known[key][1]
    results: dict[str, list[float]] = {"plain loop (fp32)": [], **{k: [] for k in variants}}
    for r in range(args.rounds):
        results["plain loop (fp32)"].append(
            plain_loop(params, images, args.steps, args.warmup, device)
        )
        for name, over in variants.items():
            results[name].append(
                neurodiff_loop(params, images, args.steps, args.warmup, device, **over)
            )
        print(
            f"round {r + 1}/{args.rounds}: "
            + ", ".join(f"{k} {v[-1]:.2f}" for k, v in results.items())
            + " images/s",
            flush=True,
        )

    peak = _peak(device, args.peak_tflops)
    base = statistics.median(results["plain loop (fp32)"])
    print(
        f"\n{'loop':30s} {'images/s':>10s} {'ratio':>7s}"
        + (f" {'TFLOP/s':>8s} {'MFU':>6s} {'peak GiB':>9s}" if device.type == "cuda" else "")
    )
    for name, values in results.items():
        ips = statistics.median(values)
        line = f"{name:30s} {ips:10.2f} {ips / base:6.2f}x"
        if device.type == "cuda":
            tflops = ips * flops_image / 1e12
            line += f" {tflops:8.1f} " + (f"{tflops / peak:6.1%}" if peak else "     -")
            memory = PEAK_MEMORY.get(str(variants.get(name)))
            line += f" {memory:9.1f}" if memory is not None else "         -"
        print(line)
    print(
        f"neurodiff precision: {'fp32' if dtype is None else 'bf16 autocast'}, channels_last "
        f"{tcfg.channels_last}, compile {tcfg.compile}"
        + (f"; MFU against a dense bf16 peak of {peak:.0f} TFLOP/s" if peak else "")
    )
    if args.sampling:
        for label, seconds in time_sampling(params, device).items():
            print(
                f"sampling one {'volume' if mcfg.spatial_dims == 3 else 'image'}, {label}: "
                f"{seconds:.2f} s"
            )
    if args.max_batch and device.type == "cuda":
        print(f"largest micro-batch that fits: {max_micro_batch(params, device)}")
    speedup = statistics.median(results["neurodiff"]) / base
    print(f"speedup vs plain loop: {speedup:.2f}x")
    return speedup


if __name__ == "__main__":
    main(sys.argv[1:])
