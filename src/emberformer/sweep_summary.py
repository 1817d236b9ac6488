"""One table for a whole multirun (grid or Optuna): every job's objective, status and folder.

Each job writes ``result.json`` into its own folder (``write_result``); the Hydra callback
``SweepSummary`` reads them all when the multirun ends, wherever the jobs ran (joblib workers,
SLURM nodes), and writes ``summary.csv`` into the sweep folder, best first.
"""
from __future__ import annotations

import csv
import json
import math
from pathlib import Path
from typing import Any

from hydra.core.hydra_config import HydraConfig
from hydra.experimental.callback import Callback
from omegaconf import DictConfig

FIELDS = ["rank", "status", "objective", "best_epoch", "overrides", "run_dir", "reason"]


def write_result(run_dir: Path, status: str, objective: float | None = None,
                 best_epoch: int | None = None, reason: str = "") -> None:
    """Called by train at the end of every job, successful or not."""
    try:
        overrides = " ".join(o for o in HydraConfig.get().overrides.task if not o.startswith("hydra"))
    except ValueError:
        overrides = ""
    rec = {"status": status, "objective": objective, "best_epoch": best_epoch,
           "overrides": overrides, "run_dir": str(run_dir), "reason": reason}
    (Path(run_dir) / "result.json").write_text(json.dumps(rec, indent=1))


def collect(sweep_dir: Path, mode: str = "max") -> list[dict[str, Any]]:
    rows = [json.loads(p.read_text()) for p in sorted(Path(sweep_dir).glob("**/result.json"))]

    def key(r: dict[str, Any]) -> tuple[int, float]:
        v = r.get("objective")
        ok = r["status"] == "ok" and v is not None and math.isfinite(v)
        return (0 if ok else 1, (-v if mode == "max" else v) if ok else 0.0)

    rows.sort(key=key)
    for i, r in enumerate(rows, 1):
        r["rank"] = i
    return rows


def write_summary(sweep_dir: Path, mode: str = "max", metric: str = "objective") -> str:
    """Write summary.csv and return the printed table."""
    rows = collect(sweep_dir, mode)
    with open(Path(sweep_dir) / "summary.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=FIELDS)
        w.writeheader()
        for r in rows:
            w.writerow({k: r.get(k) for k in FIELDS})
    lines = [f"Sweep summary ({len(rows)} jobs, best {metric} first) -> {Path(sweep_dir) / 'summary.csv'}",
             f"{'#':>3}  {'status':<7} {metric:>10} {'epoch':>5}  overrides"]
    for r in rows:
        obj = f"{r['objective']:.4f}" if isinstance(r.get("objective"), (int, float)) else "-"
        ep = str(r.get("best_epoch") or "-")
        lines.append(f"{r['rank']:>3}  {r['status']:<7} {obj:>10} {ep:>5}  {r['overrides']}")
        if r["status"] != "ok" and r.get("reason"):
            lines.append(f"{'':>5}reason: {r['reason'][:160]}")
    return "\n".join(lines)


class SweepSummary(Callback):
    """Hydra callback (conf/train.yaml: hydra.callbacks.sweep_summary)."""

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        # the Optuna sweeper opens its SQLite storage inside the sweep folder before any job runs
        Path(config.hydra.sweep.dir).mkdir(parents=True, exist_ok=True)

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        sweep_dir = Path(config.hydra.sweep.dir)
        if not sweep_dir.is_dir():
            return
        mode = config.get("early_stopping", {}).get("mode", "max")
        metric = config.get("early_stopping", {}).get("monitor", "objective")
        print(write_summary(sweep_dir, mode, metric), flush=True)
