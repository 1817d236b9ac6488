"""``python -m emberformer.evaluate ckpt_path=RUN/checkpoints/best.pt [split=test]``: score a model.

The model and the data are rebuilt from the checkpoint's saved config (plain ``key=value``
overrides on top) and scored on one split beside the copy-last baseline: pixel metrics, AP,
growth metrics, the Brier score, expected calibration error, and the same by history length;
the Brier skill score against copy-last and, where a simulator is behind the data, against its
ensemble probability. Writes ``metrics.json``, ``report.md``, ``pr_curve.png``,
``reliability.png`` and ``examples/example_N.png`` into the run folder.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from torch import nn
from torch.utils.data import DataLoader

from emberformer.scoring import ceiling
from emberformer.scoring import rollout
from emberformer.scoring import split_overlap
from emberformer.cli.entry import hydra_app, start
from emberformer.cli.run_folder import run_folder
from emberformer.cli.checks import check_model_fits_data
from emberformer.data.datamodule import SPLITS, FireDataModule
from emberformer.training.hardware import Hardware
from emberformer.scoring.metrics import PixelMetrics, check_threshold
from emberformer.scoring.scores import KEYS, Scores, leading
from emberformer.training.step import Prediction, evaluate as evaluate_pass
from emberformer.training.previews import sample_panel
from emberformer.cli.run_config import build_model, scoring_config, upgrade_targets

# ---------------------------------------------------------------------------------------- metrics
Example = tuple[dict, np.ndarray]


def score(model: nn.Module, loader: DataLoader, hardware: Hardware, device: torch.device,
          threshold: float, n_examples: int, static: torch.Tensor) -> tuple[Scores, dict[int, Scores], list[Example]]:
    """One pass over a loader (the trainer's evaluation pass): overall scores, scores by history
    length, and example samples."""
    by_len: dict[int, Scores] = {}
    examples: list[Example] = []
    n = len(loader.dataset)
    wanted = set(np.linspace(0, n - 1, min(n_examples, n)).round().astype(int).tolist()) if n else set()
    seen = 0

    def each(_i: int, b: dict, pred: Prediction, base: Prediction | None) -> None:
        nonlocal seen
        assert base is not None
        prob, copy_prob, last = pred.prob, base.prob, pred.last
        lengths = b["valid_t"].sum(1)
        for length in lengths.unique().tolist():
            i = lengths == length
            by_len.setdefault(int(length), Scores(threshold, device)).update(
                prob[i], copy_prob[i], last[i], pred.target[i], pred.mask[i])
        for i in range(prob.shape[0]):
            if seen + i in wanted:
                examples.append(({"fire": b["fire"][i].cpu(), "target": b["target"][i].cpu(),
                                  "pixel_mask": b["mask"][i].cpu(), "unknown": b["unknown"][i].cpu(),
                                  "seq_id": b["seq_id"][i], "t": b["t"][i]},
                                 prob[i, 0].cpu().numpy()))
        seen += prob.shape[0]

    total = evaluate_pass(model, loader, Scores(threshold, device), device=device, static=static,
                          autocast=hardware.autocast, each=each)
    return total, dict(sorted(by_len.items())), examples


def checkpoint_entry(cfg: DictConfig, ckpt: dict | None) -> dict | None:
    """metrics.json's ``checkpoint``: which file was scored and the epoch its weights are from
    (None for model=copy_last without one)."""
    if ckpt is None:
        return None
    return {"path": str(Path(str(cfg.ckpt_path)).expanduser().resolve()), "epoch": int(ckpt["epoch"]),
            "epoch_complete": bool(ckpt.get("epoch_complete", True))}


def ceiling_entry(scores: dict[str, float]) -> dict[str, float]:
    """The simulator ceiling's scores as a metrics.json block (KEYS)."""
    return {k: scores[k] for k in KEYS}


# ---------------------------------------------------------------------------------------- outputs
LOWER_IS_BETTER = ("ece", "brier")
NO_GAP = "-"  # the gap-closed cell of a metric on which the ceiling is not ahead of copy-last
GAP_NOTE = (f"gap closed: the share of the copy-last -> ceiling distance the model covers, shown only where "
            f"the ceiling beats copy-last by more than {ceiling.GAP_MARGIN} ({NO_GAP} elsewhere: no gap to close)")


def side_by_side(result: dict[str, dict[str, float]], first: str = "f1") -> list[tuple[str, ...]]:
    """(metric, model, copy-last) rows, ``first`` (the data's headline metric) on top; with a
    ceiling entry also (ceiling, gap closed): the share of the copy-last -> ceiling distance the
    model covers on that metric, where there is one."""
    def fmt(key: str, value: float) -> str:
        return str(int(value)) if key == "samples" else f"{value:.4f}"

    rows = []
    for k in leading(KEYS, first):
        row = (k, fmt(k, result["model"][k]), fmt(k, result["copy_last"][k]))
        if "ceiling" in result:
            m, c, top = result["model"][k], result["copy_last"][k], result["ceiling"][k]
            gap = None if k == "samples" else ceiling.gap_closed(m, c, top, lower_is_better=k in LOWER_IS_BETTER)
            row += (fmt(k, top), "" if k == "samples" else NO_GAP if gap is None else f"{100 * gap:.1f}%")
        rows.append(row)
    return rows


def skill(brier: float, reference: float) -> float | None:
    """Brier skill score 1 - brier / reference: 1 is perfect, 0 the reference's skill, < 0 worse
    than it; None when the reference is perfect (nothing to improve on)."""
    return 1.0 - brier / reference if reference > 0 else None


def brier_skill(result: dict) -> dict[str, float | None]:
    """metrics.json's ``brier_skill``: against copy-last and (with a simulator behind the data)
    against the simulator's own ensemble probability."""
    out = {"vs_copy_last": skill(result["model"]["brier"], result["copy_last"]["brier"])}
    if "ceiling" in result:
        out["vs_ensemble"] = skill(result["model"]["brier"], result["ceiling"]["brier"])
    return out


def skill_lines(skills: dict[str, float | None]) -> list[str]:
    """The Brier skill scores as report lines."""
    names = {"vs_copy_last": "copy-last", "vs_ensemble": "the simulator's ensemble probability"}
    return [f"- against {names[k]}: " + ("-" if v is None else f"{v:.4f}") for k, v in skills.items()]


def reliability_figure(path: Path, tables: dict[str, dict[str, list[float]]]):
    """reliability.png: observed frequency against mean predicted probability per bin (the
    diagonal is a calibrated forecast), and below it the pixels in each bin; returns the figure."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(5, 6))
    ax, counts = fig.subplots(2, 1, height_ratios=[3, 1], sharex=True)
    ax.plot([0, 1], [0, 1], ":", color="grey", label="calibrated")
    for (label, table), style in zip(tables.items(), ("o-", "^--", "s:")):
        kept = [(p, f, n) for p, f, n in zip(table["prob"], table["freq"], table["count"]) if n > 0]
        if not kept:
            continue
        probs, freqs, ns = zip(*kept)
        ax.plot(probs, freqs, style, label=label)
        counts.plot(probs, ns, style, label=label)
    ax.set(ylabel="observed frequency", xlim=(0, 1), ylim=(0, 1.02), title="Reliability")
    ax.grid(alpha=0.3)
    ax.legend(loc="upper left")
    counts.set(xlabel="predicted probability (bin mean)", ylabel="pixels", yscale="log")
    counts.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    return fig


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


def binary(metrics: PixelMetrics) -> bool:
    """Whether every probability scored fell in the lowest or the highest bin: a 0/1 predictor
    (copy-last) has one operating point, not a curve."""
    counts = (metrics.pos_hist + metrics.neg_hist).cpu()
    return bool(counts[1:-1].sum() == 0)


def pr_curve(path: Path, metrics: PixelMetrics, result: dict[str, dict[str, float]]):
    """Precision-recall curve of the model from its histograms (a 0/1 model: its one point),
    copy-last as a point; returns the figure."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(5, 4.5))
    ax = fig.subplots()
    if not binary(metrics):  # a step curve through a 0/1 predictor's two bins would draw its
        tp = metrics.pos_hist.flip(0).cumsum(0).cpu().double()  # precision out to recall 1
        fp = metrics.neg_hist.flip(0).cumsum(0).cpu().double()
        keep = (tp + fp) > 0
        recall = (tp / tp[-1].clamp(min=1))[keep].numpy()
        precision = (tp / (tp + fp).clamp(min=1))[keep].numpy()
        ax.plot(recall, precision, drawstyle="steps-post", label=f"model (AP {result['model']['ap']:.3f})")
    m, c = result["model"], result["copy_last"]
    ax.plot([m["rec"]], [m["prec"]], "o", label=f"model at threshold (F1 {m['f1']:.3f})"
            + ("; 0/1 predictions: one point" if binary(metrics) else ""))
    ax.plot([c["rec"]], [c["prec"]], "s", color="red", label=f"copy-last (F1 {c['f1']:.3f})")
    ax.set(xlabel="recall", ylabel="precision", xlim=(0, 1.02), ylim=(0, 1.02), title="Precision-recall")
    ax.grid(alpha=0.3)
    ax.legend(loc="lower left")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    return fig


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
                 figures: list[Path], extra: list[str] = (), notes: list[str] = ()) -> None:
    """report.md: ``notes`` (warnings) first, both tables, ``extra`` lines (the by-lead section)
    and links to the figures."""
    header = ["metric", "model", "copy-last"]
    wide = bool(table) and len(table[0]) == 5
    if wide:
        header += ["ceiling", "gap closed"]
    md = [f"# {title}", "", *[f"**{n}**\n" for n in notes],
          "## Model vs copy-last" + (" and the simulator ceiling" if wide else ""), "",
          markdown(header, table), "", *([GAP_NOTE, ""] if wide else []),
          "## By history length (real input steps)", "",
          markdown(["history", "samples", "model F1", "copy-last F1", "model growth F1",
                    "copy-last growth F1"], hist), "", *extra,
          "## Figures", "", *[f"- [{p.name}]({p.relative_to(path.parent).as_posix()})" for p in figures], ""]
    path.write_text("\n".join(md))


# ---------------------------------------------------------------------------------------- app
def evaluate(cfg: DictConfig) -> dict[str, dict[str, float]]:
    """Score the model and copy-last on ``cfg.split``; write the files; return metrics.json."""
    if cfg.split not in SPLITS:
        raise ValueError(f"split must be one of {', '.join(SPLITS)}, got {cfg.split!r}")
    if not isinstance(cfg.examples, int) or cfg.examples < 0:
        raise ValueError(f"examples must be an integer >= 0, got {cfg.examples!r}")
    horizon = rollout.check_horizon(cfg.horizon)
    run_dir = run_folder()
    cfg, ckpt = scoring_config(cfg)
    thresh = check_threshold(cfg.metrics.pred_thresh)
    hardware = instantiate(cfg.hardware)
    device = hardware.setup()
    data = instantiate(cfg.data, **hardware.loader_settings())
    check_model_fits_data(cfg.model, data)
    if horizon > 1 and not isinstance(data, FireDataModule):
        raise ValueError(f"horizon={horizon}: rollouts need fire sequences of the built-in or real-layout data; "
                         "this data is scored one day ahead (horizon=1)")
    data.setup()
    if isinstance(data, FireDataModule):
        rollout.check_horizon(horizon, data.datasets[cfg.split], f"of the {cfg.split} split ")
    model = build_model(cfg, data.static_channels, ckpt, device, day_channels=data.day_channels)
    total, by_len, examples = score(model, data.loader(cfg.split, int(cfg.seed)), hardware, device,
                                    thresh, int(cfg.examples), data.static_raster().to(device))
    result = total.result()
    samples = int(cfg.ceiling.samples)
    reliability = {"model": total.calib["model"].table()}
    if samples:
        ceil = ceiling.ceiling_scores(data, cfg.split, samples, thresh)
        if ceil is not None:
            result["ceiling"] = ceiling_entry(ceil)
            reliability["ensemble"] = ceil["reliability"]
    result["brier_skill"] = brier_skill(result)
    result["reliability"] = reliability
    if horizon > 1:
        result["by_lead"] = by_lead(model, data, cfg.split, horizon, hardware, device, thresh, samples)
    result["checkpoint"] = checkpoint_entry(cfg, ckpt)
    warning = None
    if ckpt is not None:
        saved_data = upgrade_targets(ckpt["config"]).get("data") or {}
        current = OmegaConf.to_container(cfg.data, resolve=True)
        result["split_overlap"] = split_overlap.overlap(saved_data, current, cfg.split, data.split)
        warning = split_overlap.warning(result["split_overlap"], cfg.split,
                                        split_overlap.reshuffled(saved_data, current))
        if warning:
            result["split_overlap"]["warning"] = warning
            print(warning, flush=True)
    (run_dir / "metrics.json").write_text(json.dumps(result, indent=1))
    figures = [run_dir / "pr_curve.png"]
    pr_curve(figures[0], total.pixels["model"], result)
    figures.append(run_dir / "reliability.png")
    reliability_figure(figures[-1], {"model": reliability["model"],
                                     **({"simulator ensemble": reliability["ensemble"]} if "ensemble" in reliability else {})})
    lead_md: list[str] = []
    if horizon > 1:
        figures.append(run_dir / "lead_time.png")
        rollout.lead_time_figure(figures[-1], result["by_lead"])
        header, lead_table = rollout.lead_rows(result["by_lead"])
        lead_md = [f"## By lead time (autoregressive rollout, {lead_table[0][1]} samples with {horizon} "
                   "frames ahead)", "", markdown(header, lead_table), ""]
    figures += write_examples(run_dir / "examples", examples, thresh)
    table, hist = side_by_side(result, getattr(data, "primary_metric", "f1")), history_rows(by_len)
    name = getattr(model, "name", type(model).__name__)
    title = f"{name} on the {cfg.split} split ({result['model']['samples']} samples)"
    skills = skill_lines(result["brier_skill"])
    lead_md = ["## Brier skill score (1 - Brier / the reference's Brier)", "", *skills, "", *lead_md]
    write_report(run_dir / "report.md", title, table, hist, figures, lead_md, [warning] if warning else [])
    print(f"{title}, checkpoint: {cfg.ckpt_path or 'none'}")
    wide = "ceiling" in result
    print(f"  {'metric':<17}{'model':>10}{'copy-last':>11}" + (f"{'ceiling':>10}{'gap closed':>12}" if wide else ""))
    for key, a, b, *rest in table:
        print(f"  {key:<17}{a:>10}{b:>11}" + (f"{rest[0]:>10}{rest[1]:>12}" if rest else ""))
    if wide:
        print(f"  {GAP_NOTE}")
    print("  Brier skill score " + "; ".join(line[2:] for line in skills))
    print(f"  {'history':>7}{'samples':>9}{'F1':>9}{'copy F1':>9}{'growth F1':>11}{'copy gF1':>10}")
    for row in hist:
        print(f"  {row[0]:>7}{row[1]:>9}" + "".join(f"{v:>{w}}" for v, w in zip(row[2:], (9, 9, 11, 10))))
    if horizon > 1:
        print(f"  by lead ({lead_table[0][1]} samples with {horizon} frames ahead):")
        for row in [header, *lead_table]:
            print("  " + "".join(f"{str(c):>{max(6, len(h) + 1)}}" for c, h in zip(row, header)))
    if warning:  # again at the end, beside the numbers it is about
        print(warning)
    print(f"Report: {run_dir / 'report.md'}", flush=True)
    return result


def by_lead(model: nn.Module, data, split: str, horizon: int, hardware: Hardware, device: torch.device,
            threshold: float, ceiling_samples: int) -> dict[str, dict[str, dict[str, float]]]:
    """metrics.json's ``by_lead``: model (autoregressive), copy-last and ceiling at leads 1..horizon,
    all on the samples of ``split`` with ``horizon`` frames ahead (see :mod:`emberformer.scoring.rollout`)."""
    ds = data.datasets[split]
    scores = rollout.score_by_lead(model, ds, horizon, data.static_raster().to(device), device, threshold,
                                   data.batch_size, lambda: Scores(threshold, device), hardware.autocast)
    out = {str(k): s.result() for k, s in scores.items()}
    if ceiling_samples and getattr(data, "gen", None) is not None:  # off synthetic data: noticed once above
        pairs = [ds.samples[i] for i in rollout.eligible(ds, horizon)]
        ceil = ceiling.by_lead(data, split, ceiling_samples, horizon, pairs, threshold)
        for k, entry in (ceil or {}).items():
            out[str(k)]["ceiling"] = ceiling_entry(entry)
    return out


def model_f1(cfg: DictConfig) -> float:
    """The job's value under ``-m`` (a sweep over checkpoints): the model's F1."""
    return evaluate(cfg)["model"]["f1"]


main = hydra_app("evaluate", model_f1)

if __name__ == "__main__":
    start(main, "evaluate")
