"""ConvLSTM baseline (Shi et al. 2015; WildfireSpreadTS reports one): a convolutional LSTM run
over the last ``days`` days (the U-Net's window), oldest first, then a 1x1 head on the last
hidden state. No maintained PyTorch
library provides one, so it is written here, short.

Each day's input is that day's channels (:func:`~emberformer.models.days_as_channels.day_features`)
plus the static bands. Left-padded days (``valid_t`` False) leave the state as it was, so a short
history is read exactly as if it had no padding.
"""
from __future__ import annotations

from typing import Any

import torch
from torch import nn

from emberformer.models.days_as_channels import DaysAsChannels, day_features


class ConvLSTMCell(nn.Module):
    """One ConvLSTM layer: the four gates from one convolution of [input, hidden]."""

    def __init__(self, in_channels: int, hidden: int, kernel_size: int):
        super().__init__()
        self.hidden = hidden
        self.gates = nn.Conv2d(in_channels + hidden, 4 * hidden, kernel_size, padding=kernel_size // 2)
        with torch.no_grad():  # forget-gate bias 1: the cell keeps its state until it learns not to
            self.gates.bias[hidden:2 * hidden].fill_(1.0)

    def forward(self, x: torch.Tensor, h: torch.Tensor, c: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        i, f, o, g = self.gates(torch.cat([x, h], dim=1)).chunk(4, dim=1)
        c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
        return torch.sigmoid(o) * torch.tanh(c), c


class ConvLSTM(DaysAsChannels):
    """``layers`` stacked ConvLSTM cells of ``hidden_channels`` over every input day."""

    name = "ConvLSTM"
    config = "convlstm"

    def __init__(self, static_channels: int, day_channels: int = 0, days: int = 5, hidden_channels: int = 32,
                 kernel_size: int = 3, layers: int = 2, **architecture: Any):
        super().__init__(static_channels, day_channels, days, **architecture)
        for key, value in (("model.hidden_channels", hidden_channels), ("model.layers", layers)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{key} must be an integer >= 1, got {value!r}")
        if isinstance(kernel_size, bool) or not isinstance(kernel_size, int) or kernel_size < 1 or kernel_size % 2 == 0:
            raise ValueError(f"model.kernel_size must be an odd integer >= 1, got {kernel_size!r}")
        first = self.step_channels + static_channels
        self.cells = nn.ModuleList(ConvLSTMCell(first if i == 0 else hidden_channels, hidden_channels, kernel_size)
                                   for i in range(layers))
        self.head = nn.Conv2d(hidden_channels, 1, 1)

    def forward(self, *, fire: torch.Tensor, valid_t: torch.Tensor, wind: torch.Tensor,
                static: torch.Tensor, dynamic: torch.Tensor | None = None) -> torch.Tensor:
        self.check_dynamic(dynamic)
        keep = min(self.days, fire.shape[1])
        fire, valid_t, wind = fire[:, -keep:], valid_t[:, -keep:], wind[:, -keep:]
        dynamic = None if dynamic is None else dynamic[:, -keep:]
        days = day_features(fire, valid_t, wind, dynamic)              # [B, T, C, H, W]
        B, T, _, H, W = days.shape
        static = static.to(days.dtype)
        state = [(days.new_zeros(B, c.hidden, H, W), days.new_zeros(B, c.hidden, H, W)) for c in self.cells]
        first = int(valid_t.any(0).float().argmax())  # steps padded in every sample change nothing: skipped
        for t in range(first, T):
            x = torch.cat([days[:, t], static], dim=1)
            real = valid_t[:, t].view(B, 1, 1, 1)
            for k, cell in enumerate(self.cells):
                h, c = cell(x, *state[k])
                h, c = torch.where(real, h, state[k][0]), torch.where(real, c, state[k][1])
                state[k] = (h, c)
                x = h
        return self.head(state[-1][0])

    def param_groups(self) -> dict[str, list[nn.Parameter]]:
        """temporal = the recurrent cells; spatial = the head (both at 1e-3 under optim=adam_cosine)."""
        return {"temporal": list(self.cells.parameters()), "spatial": list(self.head.parameters())}
