"""Hardware presets: device, batch size, loader workers, precision and backend switches."""
from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass

import torch

PRECISIONS = {"fp32": None, "fp16": torch.float16, "bf16": torch.bfloat16}


@dataclass
class Hardware:
    """What a preset in conf/hardware/ says (every value comes from there); ``setup()`` applies it
    and picks the device. The loader settings (batch size, workers, pinned memory) are here because
    they are the machine's: ``loader_settings()`` hands them to the data module, which builds the
    loaders."""

    device: str
    batch_size: int
    num_workers: int | str
    pin_memory: bool | str
    precision: str
    cudnn_benchmark: bool
    tf32: bool
    compile: bool
    channels_last: bool

    def __post_init__(self) -> None:
        if self.precision not in PRECISIONS:
            raise ValueError(f"hardware.precision must be one of fp32, fp16, bf16, got {self.precision!r}")
        if isinstance(self.batch_size, bool) or not isinstance(self.batch_size, int):
            raise ValueError(f"hardware.batch_size must be an integer >= 1, got {self.batch_size!r}")
        if self.batch_size < 1:
            raise ValueError(f"hardware.batch_size must be >= 1, got {self.batch_size}")
        if self.num_workers != "auto" and not (str(self.num_workers).isdigit()):
            raise ValueError(f"hardware.num_workers must be 'auto' or an integer >= 0, got {self.num_workers}")
        if self.pin_memory not in ("auto", True, False):
            raise ValueError(f"hardware.pin_memory must be auto, true or false, got {self.pin_memory}")
        dev = str(self.device)
        if dev != "auto":
            try:
                torch.device(dev)
            except RuntimeError:
                raise ValueError(f"hardware.device={dev!r} is not a device; use auto, cpu, cuda or cuda:N") from None

    def pin_for_job(self, job_num: int) -> None:
        """Parallel sweep jobs on a multi-GPU machine: job N uses GPU N mod count."""
        if str(self.device) not in ("auto", "cuda"):
            return
        count = torch.cuda.device_count()
        if count > 1:
            self.device = f"cuda:{job_num % count}"

    def torch_device(self, local_rank: int | None = None) -> torch.device:
        dev = str(self.device)
        if dev == "auto":
            dev = "cuda" if torch.cuda.is_available() else "cpu"
        if dev.startswith("cuda") and not torch.cuda.is_available():
            raise ValueError(f"hardware.device={self.device!r} but no CUDA device is available; "
                             "use hardware=cpu or hardware.device=auto")
        if dev == "cuda" and local_rank is not None:
            dev = f"cuda:{local_rank}"
        return torch.device(dev)

    def setup(self, local_rank: int | None = None) -> torch.device:
        device = self.torch_device(local_rank)
        if device.type == "cuda":
            torch.cuda.set_device(device)
            torch.backends.cudnn.benchmark = bool(self.cudnn_benchmark)
            torch.backends.cuda.matmul.allow_tf32 = bool(self.tf32)
            torch.backends.cudnn.allow_tf32 = bool(self.tf32)
        self.device_obj = device
        return device

    def loader_settings(self) -> dict:
        """batch_size, num_workers, pin_memory for the data module, 'auto' resolved."""
        cuda = self.torch_device().type == "cuda"
        workers = self.num_workers
        if workers == "auto":
            workers = min(8, os.cpu_count() or 1) if cuda else 0
        pin = cuda if self.pin_memory == "auto" else bool(self.pin_memory)
        return {"batch_size": int(self.batch_size), "num_workers": int(workers), "pin_memory": pin}

    @property
    def amp_dtype(self) -> torch.dtype | None:
        return PRECISIONS[self.precision]

    def autocast_dtype(self) -> tuple[torch.dtype | None, str]:
        """The dtype autocast really runs on this device, and why when it is not the one asked for."""
        dtype = self.amp_dtype
        if dtype is None:  # fp32: no autocast, whatever the device (and before setup() chose one)
            return None, ""
        if self.device_obj.type == "cpu" and dtype == torch.float16:
            # fp16 autocast on CPU is slow and poorly supported, and CPU runs get no grad scaler
            return torch.bfloat16, "hardware.precision=fp16 asked: CPU autocast runs bf16, fp16 needs a CUDA device"
        return dtype, ""

    def autocast(self) -> contextlib.AbstractContextManager:
        dtype, _ = self.autocast_dtype()
        if dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device_obj.type, dtype=dtype)

    def grad_scaler(self) -> torch.amp.GradScaler:
        enabled = self.precision == "fp16" and self.device_obj.type == "cuda"
        return torch.amp.GradScaler(self.device_obj.type, enabled=enabled)

    def describe(self) -> str:
        """Device and the precision that really runs (``cpu (CPU), bf16 (hardware.precision=fp16
        asked: ...)`` when the device cannot run the one asked for)."""
        dev = self.device_obj
        name = torch.cuda.get_device_name(dev) if dev.type == "cuda" else "CPU"
        dtype, why = self.autocast_dtype()
        if not why:
            return f"{dev} ({name}), {self.precision}"
        runs = next(k for k, v in PRECISIONS.items() if v == dtype)
        return f"{dev} ({name}), {runs} ({why})"
