"""``python -m emberformer.train``: compose the config, build every piece, fit, return the objective."""
from __future__ import annotations

import json
import sys
import time

import hydra
import torch
from hydra.core.hydra_config import HydraConfig
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from emberformer.cli import run_config
from emberformer.cli.checks import check_config_keys, check_model_config, check_model_fits_data, checked_optimizer
from emberformer.cli.finished_run import complete_message
from emberformer.cli.errors import hydra_errors, is_multirun, user_errors
from emberformer.cli.run_config import CONF
from emberformer.cli.run_folder import claim, owns, release_claims, run_folder, use_run_folder
from emberformer.sweeps.pruning import TrialPruning
from emberformer.sweeps.summary import run_facts, test_scores, write_result
from emberformer.tracking.run_info import run_info
from emberformer.training import checkpoint, distributed
from emberformer.training.run_state import Interrupted
from emberformer.training.trainer import NonFiniteLoss


def train(cfg: DictConfig) -> float:
    """One run; returns the best monitored value (what a sweeper optimises)."""
    started = time.time()  # the summary's wall time: the whole run, data and test pass included
    use_run_folder(None)
    if distributed.is_main():  # one run per folder; rank 0 owns it for all ranks
        claim(run_folder())
    check_config_keys(cfg)
    cfg, resume, run_dir = run_config.resume(cfg)  # last.pt: its own folder; best.pt: a new run
    done = complete_message(cfg, resume, run_dir)
    if done is not None:  # a finished run: one line, no file, no W&B run
        print(done, flush=True)
        return float(resume["early_stopping"]["best_value"])
    if distributed.is_main():
        claim(run_dir)  # a resumed run's folder: refused while another process still writes it
    # every piece is built (and so checked) before any data is generated or read
    hardware = instantiate(cfg.hardware)
    if is_multirun():
        hardware.pin_for_job(HydraConfig.get().job.num)
    loss = instantiate(cfg.loss)
    early = instantiate(cfg.early_stopping)
    optimizer = checked_optimizer(instantiate(cfg.optim))
    check_model_config(cfg.model)
    logger = instantiate(cfg.logger)
    trainer = instantiate(cfg.trainer)
    data = instantiate(cfg.data, **hardware.loader_settings())
    check_model_fits_data(cfg.model, data)
    data.setup()
    if distributed.is_main():
        (run_dir / "split.json").write_text(json.dumps(data.split, indent=1))
    torch.manual_seed(cfg.seed)
    model = instantiate(cfg.model, **run_config.channel_settings(data.static_channels, data.day_channels))
    if resume is not None:  # weights that do not fit the config: one line, before any file changes
        checkpoint.load_weights(model, resume, OmegaConf.to_container(cfg.model, resolve=True), cfg.ckpt_path)
    use_run_folder(run_dir)  # from here on, the status (result.json) is the run's own
    pruning = TrialPruning.from_hydra(max_epochs=trainer.epochs)  # a no-op outside an Optuna study
    best = trainer.fit(model=model, data=data, loss_fn=loss, optimizer_factory=optimizer,
                       early_stopping=early, hardware=hardware, logger=logger, run_dir=run_dir,
                       run_info=run_info(cfg), resume=resume, pruning=pruning, started_at=started)
    if distributed.is_main():
        write_result(run_folder(), "pruned" if pruning.pruned else "ok", best, early.best_epoch,
                     test=test_scores(trainer.summary), facts=run_facts(trainer.summary))
    return best


@hydra.main(config_path=CONF, config_name="train", version_base="1.3")
def main(cfg: DictConfig) -> float:
    try:
        return run(cfg)
    finally:
        release_claims()


def run(cfg: DictConfig) -> float:
    """``train`` with its endings recorded in result.json, by the folder's owner only."""
    try:
        with user_errors():
            return train(cfg)
    except Interrupted as e:
        if owns(run_folder()):
            write_result(run_folder(), "stopped", reason=str(e))
        print(str(e), file=sys.stderr, flush=True)
        sys.exit(e.exit_code)
    except SystemExit as e:
        # a mistake in a command never rewrites a run's status, nor another process's folder
        if owns(run_folder()) and not (run_folder() / "result.json").exists():
            stopped = e.code == 130  # Ctrl-C while the data was built (cli.errors.user_errors)
            write_result(run_folder(), "stopped" if stopped else "failed", reason="interrupted while the data "
                         "was prepared" if stopped else "configuration or data error (see log)")
        raise
    except Exception as e:  # a sweep records the trial as failed and goes on
        if owns(run_folder()):
            write_result(run_folder(), "failed", reason=f"{type(e).__name__}: {e}")
        if isinstance(e, NonFiniteLoss) and not is_multirun():
            print(f"Error: {e}", file=sys.stderr, flush=True)
            sys.exit(3)
        raise


if __name__ == "__main__":
    with hydra_errors(sys.argv, "train"):
        main()
