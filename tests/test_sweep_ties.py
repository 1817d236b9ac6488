"""A study whose completed trials all scored the same (issue 18 item 17): its report says so in one
line, on the console and in summary.md, and shows no importances and no importance plot; a study
whose scores differ still gets both. And ``debug=small``, the setting README offers for trying a
sweep, trains models whose scores differ with the swept loss weights."""
from __future__ import annotations

import csv
import shutil
from pathlib import Path

import optuna
import pytest
from PIL import Image

from conftest import run_module
from emberformer import study as study_app
from emberformer.sweeps.insight import PLOTS, write_study_report

TIE = "All 4 completed trials scored val/f1 = 0.1297: the knobs made no difference at this setting, so no importances."


def make_study(tmp_path: Path, score, name: str = "loss_weights") -> optuna.Study:
    """A real SQLite study in ``tmp_path`` with 4 completed trials over the loss weights and one
    pruned one (its own value, which the tie does not count)."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(study_name=name, storage=f"sqlite:///{tmp_path / 'optuna.db'}",
                                direction="maximize", sampler=optuna.samplers.RandomSampler(seed=0))

    def objective(trial: optuna.Trial) -> float:
        bce = trial.suggest_float("loss.bce_weight", 0.05, 1.0)
        dice = trial.suggest_float("loss.dice_weight", 0.05, 1.0)
        value = score(bce, dice)
        trial.report(value, 1)
        return value

    study.optimize(objective, n_trials=4)
    pruned = study.ask({"loss.bce_weight": optuna.distributions.UniformDistribution(0.05, 1.0),
                        "loss.dice_weight": optuna.distributions.UniformDistribution(0.05, 1.0)})
    pruned.report(0.05, 1)
    study.tell(pruned, state=optuna.trial.TrialState.PRUNED)
    return study


def test_tied_study_says_so_in_one_line_and_draws_no_importances(tmp_path):
    study = make_study(tmp_path, lambda bce, dice: 0.1297)
    text = write_study_report(tmp_path, study, [], "val/f1")
    assert text.splitlines().count(TIE) == 1, text
    assert "param_importances.png" not in text
    md = (tmp_path / "summary.md").read_text()
    assert md.splitlines().count(TIE) == 1, md
    section = md.split("## Parameter importances", 1)[1].split("## Plots", 1)[0]
    assert section.split() == TIE.split(), section  # the line is the whole section: no table of zeros
    assert "importances sum to 1" not in md and "param_importances" not in md
    assert not (tmp_path / PLOTS["importances"]).exists()
    for key in ("history", "intermediate"):  # the other plots are still drawn
        assert (tmp_path / PLOTS[key]).is_file()


def test_study_app_prints_the_tie_and_removes_an_old_importance_plot(tmp_path, capsys):
    differ = tmp_path / "differ"
    differ.mkdir()
    write_study_report(differ, make_study(differ, lambda bce, dice: bce - 0.1 * dice), [], "val/f1")
    tied = tmp_path / "tied"
    tied.mkdir()
    make_study(tied, lambda bce, dice: 0.1297)
    # a report from before this rule drew an (empty) importance plot into the folder
    shutil.copy(differ / PLOTS["importances"], tied / PLOTS["importances"])
    (tied / "job").mkdir()
    (tied / "job" / ".hydra").mkdir()
    (tied / "job" / ".hydra" / "config.yaml").write_text("early_stopping:\n  monitor: val/f1\n")
    assert study_app.main([str(tied)]) == 0
    out = capsys.readouterr().out
    assert out.splitlines().count(TIE) == 1, out
    assert not (tied / PLOTS["importances"]).exists()


def test_study_whose_scores_differ_gets_importances_and_their_plot(tmp_path):
    study = make_study(tmp_path, lambda bce, dice: 0.5 + 0.4 * bce - 0.01 * dice)
    text = write_study_report(tmp_path, study, [], "val/f1")
    assert "the knobs made no difference" not in text and "param_importances.png" in text
    md = (tmp_path / "summary.md").read_text()
    assert "the knobs made no difference" not in md and "importances sum to 1" in md
    rows = {ln.split("|")[1].strip(): float(ln.split("|")[2]) for ln in md.splitlines()
            if ln.startswith("| loss.")}
    assert set(rows) == {"loss.bce_weight", "loss.dice_weight"}
    assert sum(rows.values()) == pytest.approx(1, abs=0.002) and rows["loss.bce_weight"] > rows["loss.dice_weight"]
    with Image.open(tmp_path / PLOTS["importances"]) as im:
        assert im.format == "PNG" and im.size[0] > 100


@pytest.mark.slow
def test_a_sweep_at_debug_small_gives_trials_different_scores(tmp_path, run_env):
    """README's setting for trying a sweep: the sampler's first two trials train models that score
    differently (the second one, behind, is pruned at epoch 1 by the default pruner: its score is
    its best epoch's), so the report names no tie."""
    proc = run_module("train", ["-m", "hparams_search=loss_weights", "debug=small", "hydra.sweeper.n_trials=2",
                                "logger=none", "trainer.progress=false", "data.progress=false"],
                      run_env, tmp_path, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    with open(tmp_path / "multirun" / "optuna" / "loss_weights" / "summary.csv") as f:
        scores = [float(r["objective"]) for r in csv.DictReader(f)]
    assert len(scores) == 2 and abs(scores[0] - scores[1]) > 0.005, scores
    assert "the knobs made no difference" not in proc.stdout
