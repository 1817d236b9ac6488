"""``python -m emberformer.evaluate ckpt_path=RUN/checkpoints/best.pt [split=test]``: score a model.

The model and the data are rebuilt from the checkpoint's saved config (plain ``key=value``
overrides on top) and scored on one split beside the copy-last baseline: pixel metrics, AP,
growth metrics, expected calibration error, and the same by history length. Writes
``metrics.json``, ``report.md``, ``pr_curve.png`` and ``examples/example_N.png`` into the run folder.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import hydra
import numpy as np
import torch
from hydra.core.hydra_config import HydraConfig
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf, open_dict
from torch import nn
from torch.utils.data import DataLoader

from emberformer import checkpoint, runtime
from emberformer.data.datamodule import SPLITS
from emberformer.hardware import Hardware
from emberformer.metrics import PixelMetrics
from emberformer.previews import sample_panel
from emberformer.data.dataset import to_device

CONF = str(Path(__file__).resolve().parents[2] / "conf")
COPY_LAST = "emberformer.models.copy_last.CopyLast"
LAYOUT_READER = "emberformer.data.datamodule.FireDataModule"
SYNTHETIC_ONLY = ("num_sequences", "size", "max_frames", "steps_per_frame", "seed")
FIXED_GROUPS = ("model", "experiment", "debug", "hparams_search")  # would not fit the saved weights
ECE_BINS = 15
KEYS = ("f1", "iou", "precision", "recall", "accuracy", "ap", "growth_f1", "growth_precision",
        "growth_recall", "growth_iou", "ece", "samples")


# ---------------------------------------------------------------------------------------- config
def run_config(cfg: DictConfig) -> tuple[DictConfig, dict[str, Any] | None]:
    """The config to rebuild from (the checkpoint's, overrides on top) and the checkpoint itself."""
    ckpt = None
    if cfg.ckpt_path:
        ckpt = checkpoint.load(cfg.ckpt_path)
        cfg = _overlay(cfg, ckpt["config"])
    elif cfg.model.get("_target_") != COPY_LAST:
        raise ValueError("ckpt_path is required (e.g. ckpt_path=outputs/DATE/TIME/checkpoints/best.pt); "
                         "only model=copy_last runs without one")
    _use_layout_reader(cfg.data)
    return cfg, ckpt


def _overlay(cfg: DictConfig, saved_config: dict[str, Any]) -> DictConfig:
    """Saved config + this command's overrides (a data/hardware/... group replaces its subtree)."""
    saved = OmegaConf.create(saved_config)
    keys = [o.lstrip("+~").partition("=")[0] for o in HydraConfig.get().overrides.task]
    keys = [k for k in keys if not k.startswith("hydra") and k != "ckpt_path"]
    with open_dict(saved):
        for key in keys:
            if key in FIXED_GROUPS:
                raise ValueError(f"{key} cannot be changed when ckpt_path is given: the model and its "
                                 "config come from the checkpoint")
            OmegaConf.update(saved, key, OmegaConf.select(cfg, key), merge=False)
        for key in cfg:  # this app's own top-level keys (split, sequence, ...)
            if key not in saved or key == "ckpt_path":
                saved[key] = cfg[key]
        if "data.cache_dir" not in keys and "data" not in keys and \
                not Path(str(saved.data.cache_dir)).expanduser().is_dir():
            saved.data.cache_dir = cfg.data.cache_dir  # checkpoint from another machine: local cache
        if "pretrained" in saved.model:
            saved.model.pretrained = False  # the checkpoint holds every weight
    return saved


def _use_layout_reader(data: DictConfig) -> None:
    """A ``data.root`` given: read that folder with FireDataModule (synthetic settings dropped)."""
    with open_dict(data):
        if data.get("root") is not None and data.get("_target_") != LAYOUT_READER:
            data._target_ = LAYOUT_READER
            for key in SYNTHETIC_ONLY:
                data.pop(key, None)
        elif "root" in data and data.get("root") is None and data.get("_target_") != LAYOUT_READER:
            del data["root"]  # the synthetic module takes no root


def build_model(cfg: DictConfig, ckpt: dict[str, Any] | None, static_channels: int,
                device: torch.device) -> nn.Module:
    """The model of the config, with the checkpoint's weights, in eval mode on ``device``."""
    model = instantiate(cfg.model, static_channels=static_channels)
    if ckpt is not None:
        model.load_state_dict(ckpt["model"])
    return model.to(device).eval()


# ---------------------------------------------------------------------------------------- metrics
class Calibration:
    """Expected calibration error in constant memory: per-bin count, sum of prob, sum of target."""

    def __init__(self, device: torch.device, bins: int = ECE_BINS):
        self.bins = bins
        self.stats = torch.zeros(3, bins, dtype=torch.float64, device=device)

    @torch.no_grad()
    def update(self, prob: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> None:
        p = prob[mask].double().clamp(0, 1)
        idx = (p * self.bins).long().clamp(max=self.bins - 1)
        self.stats[0] += torch.bincount(idx, minlength=self.bins).double()
        self.stats[1] += torch.bincount(idx, weights=p, minlength=self.bins)
        self.stats[2] += torch.bincount(idx, weights=(target[mask] > 0.5).double(), minlength=self.bins)

    def compute(self) -> float:
        """sum_b n_b/N * |mean prob_b - mean target_b| = sum_b |sum prob_b - sum target_b| / N."""
        n, sp, st = self.stats.cpu()
        return float((sp - st).abs().sum() / n.sum()) if n.sum() > 0 else 0.0


class Scores:
    """Model and copy-last accumulators over one group of samples."""

    def __init__(self, threshold: float, device: torch.device):
        self.pixels = {name: PixelMetrics(threshold, device) for name in ("model", "copy_last")}
        self.calib = {name: Calibration(device) for name in ("model", "copy_last")}
        self.samples = 0

    def update(self, prob: torch.Tensor, last: torch.Tensor, target: torch.Tensor,
               mask: torch.Tensor) -> None:
        for name, p in (("model", prob), ("copy_last", last.float())):
            self.pixels[name].update(p, target, mask, last)
            self.calib[name].update(p, target, mask)
        self.samples += prob.shape[0]

    def result(self) -> dict[str, dict[str, float]]:
        out = {}
        for name, m in self.pixels.items():
            r = m.compute()
            out[name] = {"f1": r["f1"], "iou": r["iou"], "precision": r["prec"], "recall": r["rec"],
                         "accuracy": r["acc"], "ap": r["ap"], "growth_f1": r["growth_f1"],
                         "growth_precision": r["growth_prec"], "growth_recall": r["growth_rec"],
                         "growth_iou": r["growth_iou"], "ece": self.calib[name].compute(),
                         "samples": self.samples}
        return out


@torch.no_grad()
def score(model: nn.Module, loader: DataLoader, hardware: Hardware, device: torch.device,
          threshold: float, n_examples: int, static: torch.Tensor) -> tuple[Scores, dict[int, Scores], list[tuple[dict, np.ndarray]]]:
    """One pass over a loader: overall scores, scores by history length, and example samples."""
    total, by_len, examples = Scores(threshold, device), {}, []
    n = len(loader.dataset)
    wanted = set(np.linspace(0, n - 1, min(n_examples, n)).round().astype(int).tolist()) if n else set()
    seen = 0
    loader.sampler.set_epoch(0)  # type: ignore[union-attr]
    for batch in loader:
        b = to_device(batch, device, static)
        with hardware.autocast():
            logits = model(b["fire"], b["valid_t"], b["wind"], b["static"])
        prob = torch.sigmoid(logits.float())
        last = b["fire"][:, -1:] > 0.5
        total.update(prob, last, b["target"], b["mask"])
        lengths = b["valid_t"].sum(1)
        for length in lengths.unique().tolist():
            i = lengths == length
            by_len.setdefault(int(length), Scores(threshold, device)).update(
                prob[i], last[i], b["target"][i], b["mask"][i])
        for i in range(prob.shape[0]):
            if seen + i in wanted:
                examples.append(({"fire": b["fire"][i].cpu(), "target": b["target"][i].cpu(),
                                  "pixel_mask": b["mask"][i].cpu(), "seq_id": b["seq_id"][i], "t": b["t"][i]},
                                 prob[i, 0].cpu().numpy()))
        seen += prob.shape[0]
    return total, dict(sorted(by_len.items())), examples


# ---------------------------------------------------------------------------------------- outputs
def side_by_side(result: dict[str, dict[str, float]]) -> list[tuple[str, str, str]]:
    """(metric, model, copy-last) rows."""
    def fmt(key: str, value: float) -> str:
        return str(int(value)) if key == "samples" else f"{value:.4f}"

    return [(k, fmt(k, result["model"][k]), fmt(k, result["copy_last"][k])) for k in KEYS]


def markdown(header: list[str], rows: list[tuple]) -> str:
    """A markdown table."""
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return "\n".join(lines + ["| " + " | ".join(str(c) for c in r) + " |" for r in rows])


def history_rows(by_len: dict[int, Scores]) -> list[tuple]:
    """(history length, samples, model F1, copy-last F1, model growth F1, copy-last growth F1)."""
    rows = []
    for length, s in by_len.items():
        r = s.result()
        rows.append((length, s.samples, f"{r['model']['f1']:.4f}", f"{r['copy_last']['f1']:.4f}",
                     f"{r['model']['growth_f1']:.4f}", f"{r['copy_last']['growth_f1']:.4f}"))
    return rows


def pr_curve(path: Path, metrics: PixelMetrics, result: dict[str, dict[str, float]]) -> None:
    """Precision-recall curve of the model from its histograms, copy-last as a point."""
    from matplotlib.figure import Figure

    tp = metrics.pos_hist.flip(0).cumsum(0).cpu().double()
    fp = metrics.neg_hist.flip(0).cumsum(0).cpu().double()
    keep = (tp + fp) > 0
    recall = (tp / tp[-1].clamp(min=1))[keep].numpy()
    precision = (tp / (tp + fp).clamp(min=1))[keep].numpy()
    fig = Figure(figsize=(5, 4.5))
    ax = fig.subplots()
    ax.plot(recall, precision, drawstyle="steps-post", label=f"model (AP {result['model']['ap']:.3f})")
    m, c = result["model"], result["copy_last"]
    ax.plot([m["recall"]], [m["precision"]], "o", label=f"model at threshold (F1 {m['f1']:.3f})")
    ax.plot([c["recall"]], [c["precision"]], "s", color="red", label=f"copy-last (F1 {c['f1']:.3f})")
    ax.set(xlabel="recall", ylabel="precision", xlim=(0, 1.02), ylim=(0, 1.02), title="Precision-recall")
    ax.grid(alpha=0.3)
    ax.legend(loc="lower left")
    fig.tight_layout()
    fig.savefig(path, dpi=90)


def write_examples(out: Path, examples: list[tuple[dict, np.ndarray]], threshold: float) -> list[Path]:
    """examples/example_N.png panels (last input | target | probability | errors)."""
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for n, (s, prob) in enumerate(examples):
        img, _ = sample_panel(s, prob, threshold)
        paths.append(out / f"example_{n}.png")
        img.save(paths[-1])
    return paths


def write_report(path: Path, title: str, table: list[tuple], hist: list[tuple],
                 figures: list[Path]) -> None:
    """report.md: both tables and links to the figures."""
    md = [f"# {title}", "", "## Model vs copy-last", "",
          markdown(["metric", "model", "copy-last"], table), "",
          "## By history length (real input steps)", "",
          markdown(["history", "samples", "model F1", "copy-last F1", "model growth F1",
                    "copy-last growth F1"], hist), "",
          "## Figures", "", *[f"- [{p.name}]({p.relative_to(path.parent).as_posix()})" for p in figures], ""]
    path.write_text("\n".join(md))


# ---------------------------------------------------------------------------------------- app
def evaluate(cfg: DictConfig) -> dict[str, dict[str, float]]:
    """Score the model and copy-last on ``cfg.split``; write the files; return metrics.json."""
    if cfg.split not in SPLITS:
        raise ValueError(f"split must be one of {', '.join(SPLITS)}, got {cfg.split!r}")
    if not isinstance(cfg.examples, int) or cfg.examples < 0:
        raise ValueError(f"examples must be an integer >= 0, got {cfg.examples!r}")
    run_dir = runtime.run_dir()
    cfg, ckpt = run_config(cfg)
    hardware = instantiate(cfg.hardware)
    device = hardware.setup()
    data = instantiate(cfg.data, **hardware.loader_settings())
    data.setup()
    model = build_model(cfg, ckpt, data.static_channels, device)
    thresh = float(cfg.metrics.pred_thresh)
    total, by_len, examples = score(model, data.loader(cfg.split, int(cfg.seed)), hardware, device,
                                    thresh, int(cfg.examples), data.static_raster().to(device))
    result = total.result()
    (run_dir / "metrics.json").write_text(json.dumps(result, indent=1))
    figures = [run_dir / "pr_curve.png"]
    pr_curve(figures[0], total.pixels["model"], result)
    figures += write_examples(run_dir / "examples", examples, thresh)
    table, hist = side_by_side(result), history_rows(by_len)
    name = getattr(model, "name", type(model).__name__)
    title = f"{name} on the {cfg.split} split ({result['model']['samples']} samples)"
    write_report(run_dir / "report.md", title, table, hist, figures)
    print(f"{title}, checkpoint: {cfg.ckpt_path or 'none'}")
    print(f"  {'metric':<17}{'model':>10}{'copy-last':>11}")
    for key, a, b in table:
        print(f"  {key:<17}{a:>10}{b:>11}")
    print(f"  {'history':>7}{'samples':>9}{'F1':>9}{'copy F1':>9}{'growth F1':>11}{'copy gF1':>10}")
    for row in hist:
        print(f"  {row[0]:>7}{row[1]:>9}" + "".join(f"{v:>{w}}" for v, w in zip(row[2:], (9, 9, 11, 10))))
    print(f"Report: {run_dir / 'report.md'}", flush=True)
    return result


@hydra.main(config_path=CONF, config_name="evaluate", version_base="1.3")
def main(cfg: DictConfig) -> float:
    with runtime.user_errors():
        return evaluate(cfg)["model"]["f1"]


if __name__ == "__main__":
    main()
