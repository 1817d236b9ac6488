"""``python -m emberformer.study multirun/optuna/<name>``: the study report of an existing sweep folder.

Writes summary.csv (each trial's state: complete / pruned / failed, the epoch it reached), summary.md
(best trial, every trial, parameter importances) and Optuna's plots (optimization_history.png,
intermediate_values.png, param_importances.png) into the folder, and prints the table. The study is
read from the folder's optuna.db, or from ``--storage URL`` (a database shared by several machines).
"""
from __future__ import annotations

import argparse
import sys
import warnings
from pathlib import Path

from omegaconf import OmegaConf


def _metric(sweep_dir: Path) -> str:
    """The monitored metric, from any job's saved config."""
    for cfg in sorted(sweep_dir.glob("*/.hydra/config.yaml")):
        try:
            monitor = OmegaConf.select(OmegaConf.load(cfg), "early_stopping.monitor", default=None)
        except Exception:  # noqa: BLE001 - an unreadable job config: try the next
            continue
        if monitor:
            return str(monitor)
    return "objective"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m emberformer.study", description=__doc__.splitlines()[0])
    p.add_argument("sweep_dir", help="the study's sweep folder, e.g. multirun/optuna/loss_weights")
    p.add_argument("--storage", help="storage URL (default: sqlite:///<sweep_dir>/optuna.db)")
    p.add_argument("--study-name", help="study name (default: the only study in the storage)")
    args = p.parse_args(argv)
    sweep_dir = Path(args.sweep_dir).expanduser()
    if not sweep_dir.is_dir():
        print(f"Error: {sweep_dir} is not a folder (give a study's sweep folder, e.g. "
              "multirun/optuna/loss_weights)", file=sys.stderr)
        return 2
    storage = args.storage
    if storage is None:
        db = sweep_dir / "optuna.db"
        if not db.is_file():
            print(f"Error: {sweep_dir} has no optuna.db; give the study's database with --storage URL",
                  file=sys.stderr)
            return 2
        storage = f"sqlite:///{db.resolve()}"
    import matplotlib

    matplotlib.use("Agg")
    import optuna

    from emberformer.sweeps.summary import read_results
    from emberformer.sweeps.insight import open_study, write_study_report

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            study = open_study(storage, args.study_name)
    except (ValueError, KeyError) as e:
        print(f"Error: {str(e).splitlines()[0] if str(e) else type(e).__name__}", file=sys.stderr)
        return 2
    print(write_study_report(sweep_dir, study, read_results(sweep_dir), _metric(sweep_dir)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
