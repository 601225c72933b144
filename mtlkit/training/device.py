"""Where a run's tensors live and in what precision: the device/AMP policy.

AMP (``bf16``/``fp16`` autocast) and the channels-last memory format are used on CUDA
only; elsewhere the policy falls back to float32 and the default format, with a warning.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from mtlkit.training.config import AMP_DTYPES, TrainConfig


def to_device(obj: Any, device: torch.device, channels_last: bool = False) -> Any:
    """Move tensors (also inside dicts, lists and tuples) to ``device``."""
    if isinstance(obj, Tensor):
        obj = obj.to(device, non_blocking=True)
        if channels_last and obj.dim() == 4 and obj.is_floating_point():
            obj = obj.contiguous(memory_format=torch.channels_last)
        return obj
    if isinstance(obj, Mapping):
        return {k: to_device(v, device, channels_last) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(to_device(v, device, channels_last) for v in obj)
    return obj


@dataclass(frozen=True)
class DevicePolicy:
    """The device, the autocast dtype (None: float32) and the memory format of a run."""

    device: torch.device
    amp_dtype: torch.dtype | None = None
    channels_last: bool = False

    @classmethod
    def from_config(cls, cfg: TrainConfig) -> DevicePolicy:
        """The policy ``cfg`` asks for, or float32 and the default format off CUDA (with
        a warning attributed to the caller of the Trainer)."""
        device, amp, cl = torch.device(cfg.device), AMP_DTYPES[cfg.amp], cfg.channels_last
        if device.type != "cuda" and (amp is not None or cl):
            warnings.warn("AMP and channels-last are used on CUDA only; running in float32 "
                          f"with the default memory format on {device}", stacklevel=3)
            amp, cl = None, False
        return cls(device, amp, cl)

    def place(self, model: nn.Module) -> None:
        """Move ``model`` to the device (and memory format)."""
        model.to(self.device)
        if self.channels_last:
            model.to(memory_format=torch.channels_last)

    def inputs(self, x: Any) -> Any:
        """A batch's inputs on the device (channels-last images where asked)."""
        return to_device(x, self.device, self.channels_last)

    def targets(self, y: Any) -> Any:
        """A batch's labels on the device."""
        return to_device(y, self.device)

    def autocast(self) -> AbstractContextManager:
        """The autocast context of a forward pass (disabled without AMP)."""
        if self.amp_dtype is None:
            return torch.autocast(device_type=self.device.type, enabled=False)
        return torch.autocast(device_type="cuda", dtype=self.amp_dtype)
