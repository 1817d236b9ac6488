"""EmberFormer: temporal transformer over patch tokens + SegFormer decode head + learned upsampling.

Shapes, parameter groups, pixel skip and padding are described in docs/architecture.md. Inputs
are left-padded in time (``valid_t``); the spatial size need not be a multiple of the patch size:
inputs are zero-padded and the logits cropped back, so padding never reaches the loss or the
metrics.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn
from transformers import SegformerConfig
from transformers.models.segformer.modeling_segformer import SegformerDecodeHead

from emberformer.models.base import FireModel
from emberformer.models.pretrained import load_decode_head_state


def sinusoidal(pos: torch.Tensor, dim: int) -> torch.Tensor:
    """Sinusoidal encoding of integer positions [...] -> [..., dim]."""
    half = dim // 2
    freq = torch.exp(torch.arange(half, device=pos.device, dtype=torch.float32)
                     * (-math.log(10000.0) / max(half - 1, 1)))
    ang = pos.float()[..., None] * freq
    out = torch.cat([ang.sin(), ang.cos()], dim=-1)
    return F.pad(out, (0, dim - 2 * half))


class TokenEmbedder(nn.Module):
    """fire occupancy + wind MLP + static terrain (+ per-step spatial inputs) + time position -> d_model tokens.

    The per-step input layer exists only with ``day_channels`` > 0 (and the static one only with
    ``static_channels`` > 0), so a model of the built-in data has the weights it always had.
    """

    def __init__(self, static_channels: int, d_model: int, day_channels: int = 0):
        super().__init__()
        self.d_model = d_model
        self.fire = nn.Linear(1, d_model)
        self.wind = nn.Sequential(nn.Linear(2, d_model // 2), nn.GELU(), nn.Linear(d_model // 2, d_model))
        self.static = nn.Linear(static_channels, d_model) if static_channels else None
        self.dynamic = nn.Linear(day_channels, d_model) if day_channels else None

    def forward(self, occ: torch.Tensor, wind: torch.Tensor, static_tok: torch.Tensor,
                valid_t: torch.Tensor, dynamic_tok: torch.Tensor | None = None) -> torch.Tensor:
        # occ [B,T,N], wind [B,T,2], static_tok [B,N,Cs], valid_t [B,T], dynamic_tok [B,N,T,D] -> [B,N,T,d]
        pos = (valid_t.long().cumsum(1) - 1).clamp(min=0)  # 0 at the first real step
        tok = self.fire(occ.unsqueeze(-1)).transpose(1, 2)                     # [B,N,T,d]
        tok = tok + (self.wind(wind) + sinusoidal(pos, self.d_model)).unsqueeze(1)
        if self.dynamic is not None and dynamic_tok is not None:
            tok = tok + self.dynamic(dynamic_tok)
        return tok + self.static(static_tok).unsqueeze(2) if self.static is not None else tok


class RefinementDecoder(nn.Module):
    """Grid features + coarse logits -> pixel logits, log2(P) learned 2x upsampling stages.

    With ``skip_channels`` > 0 the full-resolution inputs (the last fire frames, and the static
    bands) are concatenated before ``fuse_layers`` final 3x3 convs: the reference model only ever
    sees P x P patch averages, so it cannot place a fire edge to the pixel, which copy-last does
    for free. Two convs see 5x5 pixels: as far as a fire spreads in two simulator steps.
    """

    def __init__(self, d_model: int, patch_size: int, base_channels: int, skip_channels: int = 0,
                 fuse_layers: int = 1):
        super().__init__()
        ch = 4 * base_channels
        self.stem = nn.Conv2d(d_model + 1, ch, 1)
        stages = []
        for _ in range(int(math.log2(patch_size))):
            out = max(ch // 2, base_channels)
            stages += [
                nn.ConvTranspose2d(ch, out, 2, stride=2), nn.BatchNorm2d(out), nn.ReLU(inplace=True),
                nn.Conv2d(out, out, 3, padding=1), nn.BatchNorm2d(out), nn.ReLU(inplace=True),
            ]
            ch = out
        self.up = nn.Sequential(*stages)
        self.fuse = None
        if skip_channels:
            layers: list[nn.Module] = []
            for i in range(fuse_layers):
                layers += [nn.Conv2d(ch + (skip_channels if i == 0 else 0), ch, 3, padding=1),
                           nn.BatchNorm2d(ch), nn.ReLU(inplace=True)]
            self.fuse = nn.Sequential(*layers)
        self.head = nn.Conv2d(ch, 1, 1)

    def forward(self, grid: torch.Tensor, coarse: torch.Tensor,
                skip: torch.Tensor | None = None) -> torch.Tensor:
        x = self.up(self.stem(torch.cat([grid, coarse], dim=1)))
        if self.fuse is not None and skip is not None:
            x = self.fuse(torch.cat([x, skip], dim=1))
        return self.head(x)


KEEP_LAST_LOGIT = 20.0  # sigmoid(20) = 1 - 2e-9: "burning or burned" for sure


class EmberFormer(FireModel):
    """Next-step fire mask logits [B,1,H,W] from fire history, wind and static terrain.

    Beyond the reference architecture (all off by default): ``pixel_skip`` feeds the last
    ``skip_frames`` fire frames and the static bands at full resolution into ``fuse_layers`` 3x3
    convs before the output (two frames show the newest ring of fire, where spread starts), and
    ``keep_last`` predicts every pixel of the last input frame as fire (the masks are cumulative:
    burned stays burned), so the model only decides where the fire goes next.

    ``day_channels`` (set by the app from the data module, like ``static_channels``) is the number
    of per-step spatial inputs (``dynamic``); each step's are patch-averaged into its tokens, and
    with ``pixel_skip`` the last step's go into the skip at full resolution. 0 (the built-in
    data): no such input, and the model is exactly the one it was before they existed.
    """

    name = "EmberFormer (segformer decoder)"

    def __init__(
        self,
        static_channels: int,
        d_model: int = 96,
        nhead: int = 8,
        num_layers: int = 4,
        dim_feedforward: int = 384,
        dropout: float = 0.1,
        patch_size: int = 16,
        segformer_hidden_sizes: tuple[int, ...] = (64, 128, 320, 512),
        decoder_hidden_size: int = 256,
        base_channels: int = 48,
        pretrained: bool = False,
        pretrained_path: str | None = None,
        pixel_skip: bool = False,
        skip_frames: int = 1,
        fuse_layers: int = 1,
        keep_last: bool = False,
        day_channels: int = 0,
    ):
        super().__init__()
        if patch_size < 2 or patch_size & (patch_size - 1):
            raise ValueError(f"model.patch_size must be a power of two >= 2, got {patch_size}")
        for key, flag in (("model.pretrained", pretrained), ("model.pixel_skip", pixel_skip),
                          ("model.keep_last", keep_last)):
            if not isinstance(flag, bool):
                raise ValueError(f"{key} must be true or false, got {flag!r}")
        for key, value in (("model.skip_frames", skip_frames), ("model.fuse_layers", fuse_layers)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{key} must be an integer >= 1, got {value!r}")
        if isinstance(day_channels, bool) or not isinstance(day_channels, int) or day_channels < 0:
            raise ValueError(f"day_channels must be an integer >= 0, got {day_channels!r}")
        if d_model % nhead:
            raise ValueError(f"model.d_model ({d_model}) must be divisible by model.nhead ({nhead})")
        self.patch_size = patch_size
        self.day_channels = day_channels
        # temporal part (lr_temporal)
        self.embed = TokenEmbedder(static_channels, d_model, day_channels)
        layer = nn.TransformerEncoderLayer(d_model, nhead, dim_feedforward, dropout,
                                           activation="gelu", batch_first=True)
        self.temporal = nn.TransformerEncoder(layer, num_layers, enable_nested_tensor=False)
        # spatial part (lr_spatial)
        sizes = list(segformer_hidden_sizes)
        self.pyramid = nn.ModuleList(nn.Conv2d(d_model, h, 1) for h in sizes)
        seg_cfg = SegformerConfig(num_encoder_blocks=len(sizes), hidden_sizes=sizes,
                                  decoder_hidden_size=decoder_hidden_size, num_labels=1)
        self.decode_head = SegformerDecodeHead(seg_cfg)
        if pretrained:
            try:
                missing, unexpected = self.decode_head.load_state_dict(
                    load_decode_head_state(pretrained_path), strict=False)
            except RuntimeError:  # size mismatch: the weights are SegFormer-B1's
                raise ValueError(f"model.pretrained=true: the saved decode-head weights do not fit "
                                 f"model.segformer_hidden_sizes={list(sizes)} and model.decoder_hidden_size="
                                 f"{decoder_hidden_size} (SegFormer-B1's are [64, 128, 320, 512] and 256)") from None
            assert not unexpected and all(k.startswith("classifier.") for k in missing)
        self.pixel_skip = bool(pixel_skip)
        self.skip_frames = skip_frames
        self.keep_last = keep_last
        extras = []
        if self.pixel_skip:
            extras.append("pixel skip" if skip_frames == 1 else f"pixel skip of {skip_frames} frames")
        if keep_last:
            extras.append("keeps the last frame")
        if extras:
            self.name = f"EmberFormer (segformer decoder, {', '.join(extras)})"
        skip_ch = skip_frames + static_channels + day_channels if self.pixel_skip else 0
        self.refine = RefinementDecoder(d_model, patch_size, base_channels, skip_ch, fuse_layers)

    def param_groups(self) -> dict[str, list[nn.Parameter]]:
        """temporal = embedder + transformer; spatial = everything after."""
        temporal = list(self.embed.parameters()) + list(self.temporal.parameters())
        ids = {id(p) for p in temporal}
        return {"temporal": temporal, "spatial": [p for p in self.parameters() if id(p) not in ids]}

    def forward(self, *, fire: torch.Tensor, valid_t: torch.Tensor, wind: torch.Tensor,
                static: torch.Tensor, dynamic: torch.Tensor | None = None) -> torch.Tensor:
        B, T, H, W = fire.shape
        P = self.patch_size
        got = 0 if dynamic is None else dynamic.shape[2]
        if got != self.day_channels:
            raise ValueError(f"the model was built for {self.day_channels} per-day input channel(s), the batch "
                             f"has {got}: the checkpoint and the data (data.features) do not match")
        ph, pw = (-H) % P, (-W) % P
        if ph or pw:
            fire = F.pad(fire, (0, pw, 0, ph))
            static = F.pad(static, (0, pw, 0, ph))
            if dynamic is not None:
                dynamic = F.pad(dynamic, (0, pw, 0, ph))
        Gy, Gx = (H + ph) // P, (W + pw) // P
        occ = F.avg_pool2d(fire, P).flatten(2)                      # [B,T,N]
        static_tok = (F.avg_pool2d(static, P).flatten(2).transpose(1, 2) if static.shape[1]  # [B,N,Cs]
                      else static.new_zeros(B, Gy * Gx, 0))
        dynamic_tok = None
        if dynamic is not None:                                      # [B,T,D,H,W] -> [B,N,T,D]
            D = dynamic.shape[2]
            dynamic_tok = F.avg_pool2d(dynamic.flatten(1, 2), P).reshape(B, T, D, Gy * Gx).permute(0, 3, 1, 2)
        tok = self.embed(occ, wind, static_tok, valid_t, dynamic_tok)  # [B,N,T,d]
        N, d = tok.shape[1], tok.shape[-1]
        pad_mask = (~valid_t).repeat_interleave(N, dim=0)            # [B*N,T]
        out = self.temporal(tok.reshape(B * N, T, d), src_key_padding_mask=pad_mask)
        last = out[:, -1]                                            # left padding: last is real
        grid = last.reshape(B, Gy, Gx, d).permute(0, 3, 1, 2)       # [B,d,Gy,Gx]
        pyramid = [F.avg_pool2d(conv(grid), 2 ** i, ceil_mode=True) if i else conv(grid)
                   for i, conv in enumerate(self.pyramid)]
        coarse = self.decode_head(pyramid)                           # [B,1,Gy,Gx]
        skip = None
        if self.pixel_skip:
            frames = fire[:, -self.skip_frames:]                     # left-padded: zeros before t=0
            if frames.shape[1] < self.skip_frames:
                frames = F.pad(frames, (0, 0, 0, 0, self.skip_frames - frames.shape[1], 0))
            parts = [frames, static] if dynamic is None else [frames, static, dynamic[:, -1]]
            skip = torch.cat(parts, dim=1)
        logits = self.refine(grid, coarse, skip)[..., :H, :W]       # [B,1,H,W]
        if self.keep_last:
            logits = logits.masked_fill(fire[:, -1:, :H, :W] > 0.5, KEEP_LAST_LOGIT)
        return logits
