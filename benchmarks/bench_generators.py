"""Per-image inference time of the reference generators on this machine, measured in one run.

Input: one scene of 8 Sentinel-2 frames, 3 x 32 x 32 each -> 3 x 128 x 128 (x4), batch size 1, fp32,
``torch.inference_mode``, random weights (speed does not depend on the weights). Each figure is the median
of ``--repeats`` runs after one warm-up run. Ratios are against ESRGAN small measured in the same process.

SR3 (2000-step linear schedule, 97.8M-parameter U-Net): one sampler step costs one U-Net forward plus a
few element-wise operations, so by default we time ``--sr3-steps`` U-Net steps and extrapolate to all 2000
DDPM steps and to 50 DDIM steps (stated in the output as "extrapolated"). ``--full-ddim`` also runs the
50-step DDIM sampler end to end and reports the measured figure.

Also prints the parameter count of every generator and size (meta device, no memory needed).

Usage: python benchmarks/bench_generators.py [--repeats 5] [--sr3-steps 5] [--full-ddim] [--threads N]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from clipscore_sr.baselines import build_discriminator, build_generator, count_parameters, list_generators


def median_time(fn, repeats: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--sr3-steps", type=int, default=5, help="U-Net steps timed for SR3 (then extrapolated)")
    ap.add_argument("--full-ddim", action="store_true", help="also run DDIM-50 end to end")
    ap.add_argument("--threads", type=int, default=None)
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    print("Parameter counts (8 frames, x4; in_ch = 3 per frame):")
    for name, sizes in list_generators().items():
        for size in sizes:
            n = count_parameters(build_generator(name, size, 8, 4, device="meta"))
            print(f"  {name:<11} {size:<7} {n:>13,d}")
    for cond in (False, True):
        n = count_parameters(build_discriminator(8, cond, device="meta"))
        print(f"  {'esrgan-D':<11} {'lr-cond' if cond else 'plain':<7} {n:>13,d}   (U-Net discriminator, SN)")

    torch.manual_seed(0)
    lr = torch.rand(1, 8, 3, 32, 32)
    print(f"\nPer-image time, 8x3x32x32 -> 3x128x128, batch 1, CPU threads={torch.get_num_threads()}, "
          f"median of {args.repeats}:")
    results: dict[str, tuple[float, str]] = {}
    with torch.inference_mode():
        for label, name, size in (("ESRGAN small", "esrgan", "small"), ("SRCNN (authors')", "srcnn", "small"),
                                  ("HighResNet (authors')", "highresnet", "small"), ("SRCNN 9-1-5", "srcnn-915", "small"),
                                  ("SRCNN multi-frame", "srcnn-mf", "small"),
                                  ("HighResNet compact", "highresnet-compact", "small")):
            model = build_generator(name, size, 8, 4).eval()
            assert model(lr).shape == (1, 3, 128, 128)
            results[label] = (median_time(lambda m=model: m(lr), args.repeats), "measured")
            del model

        sr3 = build_generator("sr3", "small", 8, 4).eval()
        cond = sr3.condition(lr)
        x = torch.randn(1, 3, 128, 128)
        gamma = torch.tensor([0.5])
        steps = max(1, args.sr3_steps)

        def unet_steps() -> None:
            for _ in range(steps):
                sr3.unet(x, cond, gamma)

        per_step = median_time(unet_steps, max(1, args.repeats // 2)) / steps
        T = sr3.diffusion.num_timesteps
        results[f"SR3 DDPM ({T} steps)"] = (per_step * T, f"extrapolated from {steps} U-Net steps")
        results["SR3 DDIM (50 steps)"] = (per_step * 50, f"extrapolated from {steps} U-Net steps")
        if args.full_ddim:
            g = torch.Generator().manual_seed(0)
            t0 = time.perf_counter()
            out = sr3.sample(lr, "ddim", steps=50, eta=0.0, generator=g)
            results["SR3 DDIM (50 steps) full run"] = (time.perf_counter() - t0, "measured once")
            assert out.shape == (1, 3, 128, 128)

    base = results["ESRGAN small"][0]
    for label, (sec, how) in results.items():
        print(f"  {label:<30} {sec * 1000:>12.1f} ms   x{sec / base:>9.2f} vs ESRGAN small   ({how})")
    ddpm = results[f"SR3 DDPM ({T} steps)"][0]
    ddim = results["SR3 DDIM (50 steps)"][0]
    print(f"\nESRGAN small is {ddpm / base:.0f}x faster than SR3 with DDPM ({T} steps) and "
          f"{ddim / base:.1f}x faster than SR3 with DDIM (50 steps) on this machine "
          f"(paper: ESRGAN ~200x faster than SR3).")


if __name__ == "__main__":
    main()
