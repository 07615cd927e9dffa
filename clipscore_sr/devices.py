"""Device and precision selection shared by every model-backed metric, generator and trainer."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch

from .errors import SRMetricsError

PRECISIONS = ("fp32", "bf16", "fp16")
_DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


def resolve_device(spec: str | torch.device | None = "auto") -> torch.device:
    """``auto`` -> cuda if available, else mps if available, else cpu. Explicit names are checked."""
    if isinstance(spec, torch.device):
        return spec
    spec = (spec or "auto").lower()
    if spec == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        mps = getattr(torch.backends, "mps", None)
        if mps is not None and mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if spec.startswith("cuda") and not torch.cuda.is_available():
        raise SRMetricsError(f"--device {spec}: CUDA is not available on this machine (use --device cpu or auto)")
    if spec == "mps":
        mps = getattr(torch.backends, "mps", None)
        if mps is None or not mps.is_available():
            raise SRMetricsError("--device mps: MPS is not available on this machine (use --device cpu or auto)")
    try:
        return torch.device(spec)
    except RuntimeError as exc:
        raise SRMetricsError(f"--device {spec}: not a valid device ({exc})") from None


def resolve_precision(precision: str | None, device: torch.device) -> str:
    """Validate a precision name; fp32 is the default, and half precisions need an accelerator."""
    precision = (precision or "fp32").lower()
    if precision not in PRECISIONS:
        raise SRMetricsError(f"--precision {precision}: expected one of {', '.join(PRECISIONS)}")
    if precision == "fp16" and device.type == "cpu":
        raise SRMetricsError("--precision fp16 needs a GPU; use fp32 or bf16 on CPU")
    return precision


def autocast(device: torch.device, precision: str) -> contextlib.AbstractContextManager:
    """Autocast context for ``precision`` on ``device`` (a no-op for fp32)."""
    if precision == "fp32":
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=_DTYPES[precision])


@contextlib.contextmanager
def inference(device: torch.device, precision: str = "fp32") -> Iterator[None]:
    """``torch.inference_mode`` plus autocast: the context every metric forward pass runs in."""
    with torch.inference_mode(), autocast(device, precision):
        yield


def init_distributed(backend: str) -> None:
    """Join torchrun's process group (once per process) and leave it at exit: a gloo group left to the
    interpreter's teardown can abort a rank with "terminate called without an active exception"."""
    import atexit

    import torch.distributed as dist

    if not dist.is_initialized():
        dist.init_process_group(backend=backend)
        atexit.register(_leave_distributed)


def _leave_distributed() -> None:
    import torch.distributed as dist

    if dist.is_initialized():
        dist.destroy_process_group()

