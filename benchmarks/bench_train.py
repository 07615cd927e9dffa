"""Training step time of ESRGAN with and without the CLIP loss (random-weight RN50), measured in one process.

Builds everything offline in a temporary folder: synthetic S2-NAIP tiles (8 frames of 32x32 -> 128x128),
random VGG19 weights passed by path (``losses.perceptual_weights``; perceptual loss), and a random-weight open_clip RN50
saved as a local-dir model. Both trainers run the real step code (``Trainer._step_gan``: generator forward,
L1 + VGG19 + GAN (+ CLIP) losses, backward, Adam; discriminator step) on the same batch; the figure is the
ratio of the median step times, CLIP / no CLIP.

    python benchmarks/bench_train.py                 # ESRGAN small, batch 8, fp32 on CPU
    python benchmarks/bench_train.py --sizes small,medium --precision bf16 --device cuda
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

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def write_rn50(folder: Path) -> Path:
    import open_clip
    from safetensors.torch import save_file

    torch.manual_seed(0)
    model = open_clip.create_model("RN50", pretrained=None)
    folder.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, folder / "open_clip_model.safetensors")
    prep = {"mean": [0.48145466, 0.4578275, 0.40821073], "std": [0.26862954, 0.26130258, 0.27577711],
            "interpolation": "bicubic", "resize_mode": "shortest"}
    (folder / "open_clip_config.json").write_text(json.dumps({"model_cfg": open_clip.get_model_config("RN50"),
                                                              "preprocess_cfg": prep}))
    return folder


def time_interleaved(cfgs: dict[str, dict], steps: int, warmup: int, device: torch.device
                     ) -> tuple[dict[str, list[float]], dict[str, list[float]]]:
    """Alternate one step of each trainer (A, B, A, B, ...) so that load from other processes on the machine
    affects every configuration alike; returns the timed (post-warm-up) wall-clock and CPU (process) seconds
    per step and configuration. On a shared CPU the CPU-time ratio is the steadier figure."""
    from clipscore_sr.baselines.trainer import Trainer

    trainers = {k: Trainer(c) for k, c in cfgs.items()}
    batches = {k: next(t._batches())[:2] for k, t in trainers.items()}
    times: dict[str, list[float]] = {k: [] for k in cfgs}
    cpu: dict[str, list[float]] = {k: [] for k in cfgs}
    for i in range(warmup + steps):
        for k, trainer in trainers.items():
            if device.type == "cuda":
                torch.cuda.synchronize()
            t0, c0 = time.perf_counter(), time.process_time()
            trainer._step_gan(*batches[k])
            if device.type == "cuda":
                torch.cuda.synchronize()
            if i >= warmup:
                times[k].append(time.perf_counter() - t0)
                cpu[k].append(time.process_time() - c0)
    return times, cpu


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="small")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--steps", type=int, default=3, help="timed steps per configuration")
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--precision", default="fp32")
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args()
    os.environ["CLIPSCORE_SR_OFFLINE"] = "1"
    device = torch.device(args.device)
    from tests.train_support import make_config, make_s2naip, write_random_vgg19

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        vgg = write_random_vgg19(tmp / "vgg")  # stand-in weights passed by path, as a user's own
        data = make_s2naip(tmp / "data", n=args.batch, frames=8)
        clip_dir = write_rn50(tmp / "rn50")
        print(f"torch {torch.__version__}, threads {torch.get_num_threads()}, device {device}, "
              f"precision {args.precision}, batch {args.batch}, LR 8x32x32 -> HR 128x128")
        for size in args.sizes.split(","):
            cfgs = {}
            for clip_w in (0.0, 1.0):
                cfg = make_config(tmp / f"run-{size}-{clip_w}", data, "esrgan",
                                  data={"val_fraction": 0.0, "crop_size": 32},
                                  losses={"perceptual": 1.0, "clip": clip_w, "clip_model": f"local-dir:{clip_dir}",
                                          "perceptual_weights": str(vgg)},
                                  discriminator={"num_feat": 64},
                                  train={"steps": 100, "batch_size": args.batch, "device": args.device,
                                         "precision": args.precision},
                                  validation={"interval": 0})
                cfg["model"] = {"name": "esrgan", "size": size, "n_frames": 8, "scale": 4, "options": {}}
                cfgs["with CLIP loss (RN50)" if clip_w else "without CLIP loss"] = cfg
            load0 = os.getloadavg()[0]
            times, cpu = time_interleaved(cfgs, args.steps, args.warmup, device)
            med = {k: statistics.median(v) for k, v in times.items()}
            cmed = {k: statistics.median(v) for k, v in cpu.items()}
            for k, v in times.items():
                print(f"esrgan-{size} {k:22s}: median {med[k]:.3f} s/step wall ({1 / med[k]:.3f} steps/s; "
                      f"steps {', '.join(f'{t:.2f}' for t in v)}), {cmed[k]:.2f} CPU s/step")
            a, b = med["without CLIP loss"], med["with CLIP loss (RN50)"]
            ca, cb = cmed["without CLIP loss"], cmed["with CLIP loss (RN50)"]
            print(f"esrgan-{size}: CLIP loss overhead ratio {b / a:.3f}x wall-clock (+{100 * (b / a - 1):.1f}%), "
                  f"{cb / ca:.3f}x CPU time (+{100 * (cb / ca - 1):.1f}%); "
                  f"load average {load0:.2f} -> {os.getloadavg()[0]:.2f}")

if __name__ == "__main__":
    main()
