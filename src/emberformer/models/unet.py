"""U-Net baseline from segmentation-models-pytorch (the library of the WildfireSpreadTS
benchmark's own code): the last ``days`` days' channels flattened plus the static bands in
(:mod:`emberformer.models.days_as_channels`), next-step logits out.

No weights are ever fetched from a hub: ``encoder_weights`` must stay null, and pretrained encoder
weights come from a local file (``encoder_weights_path``: a ``torch.save``d state dict of the smp
encoder). A file whose first convolution takes 3 channels (ImageNet weights) is adapted to this
input the way smp adapts its own pretrained weights (``set_in_channels``: the RGB filters repeated
over the channels, scaled by 3 / channels); a file that fits neither is a one-line error naming it.
"""
from __future__ import annotations

import pickle
import zipfile
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from emberformer.models.days_as_channels import DaysAsChannels


class EncoderWeightsError(ValueError):
    """``model.encoder_weights_path`` cannot be used: missing, unreadable or not fitting."""


def _first_difference(module: nn.Module, state: dict[str, Any]) -> tuple[int, str] | None:
    """Why ``state`` does not fit ``module`` exactly: (how many keys fit before, the first key
    that does not), or None when it fits."""
    own = module.state_dict()
    for i, (key, value) in enumerate(own.items()):
        if key not in state:
            return i, f"it has no {key}"
        if not isinstance(state[key], torch.Tensor) or state[key].shape != value.shape:
            got = tuple(state[key].shape) if isinstance(state[key], torch.Tensor) else type(state[key]).__name__
            return i, f"its {key} is {got}, the encoder's {tuple(value.shape)}"
    extra = sorted(set(state) - set(own))
    return (len(own), f"it has {extra[0]}, which the encoder has not") if extra else None


def load_encoder_weights(encoder: nn.Module, path: str, encoder_name: str, depth: int, in_channels: int) -> None:
    """Load the state dict in ``path`` into ``encoder`` (an smp encoder of ``in_channels`` inputs),
    adapting a 3-channel first convolution as smp does; EncoderWeightsError in one line otherwise."""
    import segmentation_models_pytorch as smp

    file = Path(path).expanduser()
    where = f"model.encoder_weights_path={path}"
    if not file.is_file():
        raise EncoderWeightsError(f"{where}: no such file (a torch.save'd state dict of the smp "
                                  f"{encoder_name} encoder)")
    try:
        state = torch.load(file, map_location="cpu", weights_only=True)
    except (RuntimeError, pickle.UnpicklingError, zipfile.BadZipFile, EOFError, OSError, ValueError) as e:
        reason = str(e).strip().splitlines()[0][:120] if str(e).strip() else type(e).__name__
        raise EncoderWeightsError(f"{where} is not a readable torch.save file: {reason}") from None
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise EncoderWeightsError(f"{where} holds a {type(state).__name__}, not a state dict of the smp "
                                  f"{encoder_name} encoder")
    why = _first_difference(encoder, state)
    if why is None:
        encoder.load_state_dict(state)
        return
    rgb = smp.encoders.get_encoder(encoder_name, in_channels=3, depth=depth, weights=None)
    rgb_why = _first_difference(rgb, state)
    if rgb_why is not None:  # the reason of the closer fit (the one whose mismatch comes later)
        raise EncoderWeightsError(f"{where} does not fit model.encoder_name={encoder_name} with 3 or "
                                  f"{in_channels} input channels: {max(why, rgb_why)[1]}")
    rgb.load_state_dict(state)
    rgb.set_in_channels(in_channels, pretrained=True)
    encoder.load_state_dict(rgb.state_dict())


class UNet(DaysAsChannels):
    """smp.Unet over the flattened days; inputs are zero-padded to a multiple of 2**encoder_depth
    and the logits cropped back, so padding never reaches the loss or the metrics."""

    config = "unet"

    def __init__(self, static_channels: int, day_channels: int = 0, days: int = 5,
                 encoder_name: str = "resnet18", encoder_depth: int = 5, encoder_weights: str | None = None,
                 encoder_weights_path: str | None = None,
                 decoder_channels: tuple[int, ...] = (256, 128, 64, 32, 16), **architecture: Any):
        import segmentation_models_pytorch as smp

        super().__init__(static_channels, day_channels, days, **architecture)
        if encoder_weights is not None:
            raise ValueError(f"model.encoder_weights={encoder_weights}: weights are never downloaded here; leave it "
                             f"null and pass a local file with model.encoder_weights_path=FILE")
        if encoder_name not in smp.encoders.get_encoder_names():
            raise ValueError(f"model.encoder_name={encoder_name} is not an smp encoder (e.g. resnet18, resnet34, "
                             f"efficientnet-b0)")
        if isinstance(encoder_depth, bool) or not isinstance(encoder_depth, int) or not 1 <= encoder_depth <= 5:
            raise ValueError(f"model.encoder_depth must be an integer in 1..5, got {encoder_depth!r}")
        decoder = tuple(int(c) for c in decoder_channels)
        if len(decoder) != encoder_depth:
            raise ValueError(f"model.decoder_channels needs one entry per encoder stage ({encoder_depth}), "
                             f"got {list(decoder)}")
        self.net = smp.Unet(encoder_name=encoder_name, encoder_depth=encoder_depth, encoder_weights=None,
                            decoder_channels=decoder, in_channels=self.in_channels, classes=1)
        if encoder_weights_path:
            load_encoder_weights(self.net.encoder, str(encoder_weights_path), encoder_name, encoder_depth,
                                 self.in_channels)
        self.multiple = 2 ** encoder_depth
        self.name = f"U-Net ({encoder_name} encoder, {days} days as channels)"

    def forward(self, *, fire: torch.Tensor, valid_t: torch.Tensor, wind: torch.Tensor,
                static: torch.Tensor, dynamic: torch.Tensor | None = None) -> torch.Tensor:
        x = self.flat_input(fire=fire, valid_t=valid_t, wind=wind, static=static, dynamic=dynamic)
        H, W = x.shape[-2:]
        ph, pw = (-H) % self.multiple, (-W) % self.multiple
        if ph or pw:
            x = F.pad(x, (0, pw, 0, ph))
        return self.net(x)[..., :H, :W]

    def param_groups(self) -> dict[str, list[nn.Parameter]]:
        return {"temporal": [], "spatial": list(self.parameters())}
