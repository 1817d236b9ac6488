"""``python -m emberformer.predict ckpt_path=… sequence=7 [data.root=DIR]``: predict one sequence.

Every sample of the sequence (history 0..t -> frame t+1) is predicted with the checkpoint's model
and written as ``pred_XXX.png`` (XXX = t+1) in the data layout's colours, plus an animated
``sequence_<id>.gif`` of history (last input) | prediction | truth.

With ``horizon=K [start=T]`` the model forecasts K frames ahead from observed frames 0..T (T
default 0) by an autoregressive rollout (:mod:`emberformer.scoring.rollout`): ``forecast_XXX.png`` for
frames T+1..T+K and ``sequence_<id>_from_<T>.gif`` of last observed frame | forecast | truth.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig
from PIL import Image, ImageDraw
from torch.utils.data import DataLoader, Subset

from emberformer.scoring import rollout
from emberformer.cli.entry import hydra_app, start
from emberformer.scoring.metrics import check_threshold
from emberformer.cli.run_folder import run_folder
from emberformer.data.datamodule import FireDataModule
from emberformer.data.dataset import FireSamples, collate, to_device
from emberformer.data.frames import encode_mask, write_mask
from emberformer.training.step import model_step
from emberformer.cli.run_config import build_model, scoring_config

GIF_MS = 400
LABELS = ("history (last input)", "prediction", "truth")


def sequence_id(value: object, ids: list[int], root: Path) -> int:
    """The requested id, or a one-line error naming it and the ids there are."""
    available = f"available ids: {min(ids)}..{max(ids)} ({len(ids)} sequences in {root})"
    if value is None:
        raise ValueError(f"sequence is required, e.g. sequence={ids[0]}; {available}")
    try:
        sid = int(str(value))
    except ValueError:
        sid = None
    if sid not in ids:
        raise ValueError(f"sequence={value} does not exist; {available}")
    return sid


def gif_frame(last: np.ndarray, pred: np.ndarray, truth: np.ndarray, caption: str,
              labels: tuple[str, str, str] = LABELS) -> Image.Image:
    """Three tiles (history | prediction | truth) in the layout's colours, with labels."""
    h, w = pred.shape
    scale = max(1, 160 // max(h, w))
    gap, top = 4, 30
    img = Image.new("RGB", (3 * w * scale + 2 * gap, h * scale + top), (255, 255, 255))
    draw = ImageDraw.Draw(img)
    draw.text((2, 2), caption, fill=(0, 0, 0))
    for i, (mask, label) in enumerate(zip((last, pred, truth), labels)):
        x = i * (w * scale + gap)
        tile = Image.fromarray(encode_mask(mask > 0.5, "fire")).resize((w * scale, h * scale), Image.NEAREST)
        img.paste(tile, (x, top))
        draw.text((x + 2, 16), label, fill=(80, 80, 80))
    return img


@torch.no_grad()
def predict(cfg: DictConfig) -> list[Path]:
    """Write the predicted frames and the GIF of ``cfg.sequence``; return the PNG paths."""
    out = Path(cfg.out_dir).expanduser() if cfg.out_dir else run_folder()
    horizon, start = cfg.horizon, cfg.start
    if horizon is None and start is not None:
        raise ValueError(f"start={start} needs horizon=K (forecast K frames ahead from frame {start})")
    if horizon is not None:
        horizon = rollout.check_horizon(horizon)
    cfg, ckpt = scoring_config(cfg)
    thresh = check_threshold(cfg.metrics.pred_thresh)
    hardware = instantiate(cfg.hardware)
    device = hardware.setup()
    data = instantiate(cfg.data, **hardware.loader_settings())
    if not isinstance(data, FireDataModule):
        raise ValueError("predict draws one sequence of the built-in or real-layout data; a data=wsts or data=ndws model "
                         "is scored with python -m emberformer.evaluate ckpt_path=...")
    data.setup(need_splits=False)  # one sequence is predicted: any number of them will do
    sid = sequence_id(cfg.sequence, sorted(i for ids in data.split.values() for i in ids), data.layout_root)
    samples = next(ds for ds in data.datasets.values() if sid in ds.seq_ids)  # its split's data set
    model = build_model(cfg, data.static_channels, ckpt, device)
    h, w = samples.meta[sid].height, samples.meta[sid].width
    out.mkdir(parents=True, exist_ok=True)
    paths, frames = [], []
    static = data.static_raster().to(device)
    if horizon is not None:
        return forecast(model, samples, sid, horizon, start, static, device, thresh, hardware.autocast, out)
    of_sid = Subset(samples, [i for i, (s, _) in enumerate(samples.samples) if s == sid])
    for batch in DataLoader(of_sid, batch_size=data.batch_size, collate_fn=collate):
        b = to_device(batch, device, static)
        pred = (model_step(model, b, hardware.autocast).prob > thresh)[:, 0, :h, :w].cpu().numpy()
        for i in range(pred.shape[0]):
            t = int(batch["t"][i])
            paths.append(out / f"pred_{t + 1:03d}.png")
            write_mask(paths[-1], pred[i], "fire")
            frames.append(gif_frame(b["fire"][i, -1, :h, :w].cpu().numpy(), pred[i],
                                    b["target"][i, 0, :h, :w].cpu().numpy(),
                                    f"sequence {sid}: frames 0..{t} -> frame {t + 1}"))
    gif = out / f"sequence_{sid}.gif"
    frames[0].save(gif, save_all=True, append_images=frames[1:], duration=GIF_MS, loop=0)
    print(f"Sequence {sid}: {len(paths)} predicted frames ({paths[0].name}..{paths[-1].name}) and "
          f"{gif.name} in {out}", flush=True)
    return paths


def forecast(model, samples: FireSamples, sid: int, horizon: int, start: object, static: torch.Tensor,
             device: torch.device, thresh: float, autocast, out: Path) -> list[Path]:
    """Roll the model out ``horizon`` frames from frame ``start`` of sequence ``sid``: forecast PNGs
    and a GIF of last observed frame | forecast | truth, step by step."""
    frames = samples.meta[sid].frames
    start = 0 if start is None else start
    if isinstance(start, bool) or not isinstance(start, int) or not 0 <= start <= frames - 2:
        raise ValueError(f"start={start} is not a frame of sequence {sid} to forecast from "
                         f"(it has {frames} frames: start=0..{frames - 2})")
    if start + horizon > frames - 1:
        raise ValueError(f"horizon={horizon} from start={start} runs past the end of sequence {sid} "
                         f"({frames} frames: at most horizon={frames - 1 - start} from start={start})")
    index = samples.samples.index((sid, start))
    h, w = samples.meta[sid].height, samples.meta[sid].width
    leads = rollout.rollout_batch(model, samples, [index], horizon, static, device, thresh, autocast)
    labels = (f"last observed (frame {start})", "forecast", "truth")
    paths, images = [], []
    for lead in leads:
        t = start + lead.lead
        frame = lead.frame[0, 0, :h, :w].cpu().numpy()
        paths.append(out / f"forecast_{t:03d}.png")
        write_mask(paths[-1], frame, "fire")
        images.append(gif_frame(lead.observed[0, 0, :h, :w].cpu().numpy(), frame,
                                lead.target[0, 0, :h, :w].cpu().numpy(),
                                f"sequence {sid}: frames 0..{start} -> frame {t} (lead {lead.lead})", labels))
    gif = out / f"sequence_{sid}_from_{start}.gif"
    images[0].save(gif, save_all=True, append_images=images[1:], duration=GIF_MS, loop=0)
    print(f"Sequence {sid}: forecast of {horizon} frames from frame {start} ({paths[0].name}..{paths[-1].name}) "
          f"and {gif.name} in {out}", flush=True)
    return paths


main = hydra_app("predict", predict)

if __name__ == "__main__":
    start(main, "predict")
