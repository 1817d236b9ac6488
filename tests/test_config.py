"""Every config group composes and builds the object its file names, with the seed's values."""
from __future__ import annotations

import json

import pytest
from hydra.errors import InstantiationException
from hydra.utils import instantiate
from omegaconf import OmegaConf

from conftest import compose_config, one_line_error, run_app, run_module
from emberformer.cli.errors import check_argv
from emberformer.cli.moved_keys import upgrade_saved
from emberformer.data.datamodule import SyntheticFireDataModule
from emberformer.data.reader import DataError
from emberformer.training.early_stopping import EarlyStopping
from emberformer.training.hardware import Hardware
from emberformer.training.losses import BCEDiceLoss, BCELoss, DiceLoss, FocalTverskyLoss
from emberformer.models.copy_last import CopyLast
from emberformer.models.emberformer import EmberFormer
from emberformer.tracking import RunLogger
from emberformer.training.trainer import Trainer


cfg_of = compose_config


def test_defaults_are_the_seed():
    cfg = cfg_of()
    assert cfg.trainer.epochs == 10 and cfg.trainer.log_metrics_every == 50  # README "Results"
    assert cfg.metrics.pred_thresh == 0.5 and cfg.seed == 0
    m = cfg.model
    assert (m.d_model, m.nhead, m.num_layers, m.dim_feedforward, m.dropout, m.patch_size, m.base_channels) == \
        (96, 8, 4, 384, 0.1, 16, 48)
    assert m.pretrained is False and m.pretrained_path is None
    # the default recipe's additions on the built-in data (README "Results")
    assert (m.pixel_skip, m.skip_frames, m.fuse_layers, m.keep_last) == (True, 2, 2, True)
    assert (cfg.loss.bce_weight, cfg.loss.dice_weight) == (0.5, 0.5)
    assert (cfg.optim.lr_temporal, cfg.optim.lr_spatial, cfg.optim.weight_decay) == (1e-3, 1e-3, 1e-4)
    assert (cfg.optim.warmup_epochs, cfg.optim.min_lr_ratio) == (1.0, 0.01) and cfg.ceiling.samples == 32
    ref = cfg_of("experiment=seed_rtx3090")  # the reference run keeps the reference guide's values
    assert (ref.model.pixel_skip, ref.model.skip_frames, ref.model.fuse_layers, ref.model.keep_last) == \
        (False, 1, 1, False)
    assert ref.optim._target_ == "emberformer.training.optim.adam"
    assert (ref.optim.lr_temporal, ref.optim.lr_spatial, ref.optim.weight_decay) == (1e-3, 1e-4, 1e-4)
    es = cfg.early_stopping
    assert (es.enabled, es.patience, es.monitor, es.mode, es.min_delta) == (True, 10, "val/f1", "max", 0.001)
    assert cfg.logger.mode == "offline"
    assert cfg.hardware.device == "auto"


@pytest.mark.parametrize("choice,cls,values", [
    ("bce_dice", BCEDiceLoss, {"bce": 0.5, "dice": 0.5}),
    ("bce", BCELoss, {"bce": 1.0}),
    ("dice", DiceLoss, {"dice": 1.0}),
    ("focal_tversky", FocalTverskyLoss, {"focal": 0.7, "tversky": 0.3}),
])
def test_loss_group(choice, cls, values):
    loss = instantiate(cfg_of(f"loss={choice}").loss)
    assert isinstance(loss, cls) and loss.terms == values


def test_loss_override_reaches_the_object():
    loss = instantiate(cfg_of("loss=bce_dice", "loss.dice_weight=0.7").loss)
    assert loss.terms == {"bce": 0.5, "dice": 0.7}
    assert instantiate(cfg_of("loss=bce", "loss.pos_weight=auto").loss).pos_weight == "auto"


@pytest.mark.parametrize("choice,enabled,patience,monitor,min_delta", [
    ("default", True, 10, "val/f1", 0.001),
    ("aggressive", True, 5, "val/f1", 0.005),
    ("patient", True, 15, "val/f1", 0.0001),
    ("iou", True, 10, "val/iou", 0.001),
    ("disabled", False, 10, "val/f1", 0.001),
])
def test_early_stopping_group(choice, enabled, patience, monitor, min_delta):
    es = instantiate(cfg_of(f"early_stopping={choice}").early_stopping)
    assert isinstance(es, EarlyStopping)
    assert (es.enabled, es.patience, es.monitor, es.min_delta) == (enabled, patience, monitor, min_delta)


def test_early_stopping_targets_override():
    es = instantiate(cfg_of("early_stopping=patient", "early_stopping.targets={val/f1:0.8,val/iou:0.7}").early_stopping)
    assert es.targets == {"val/f1": 0.8, "val/iou": 0.7}


@pytest.mark.parametrize("choice,device,batch,precision", [
    ("auto", "auto", 16, "fp32"), ("cpu", "cpu", 16, "fp32"), ("rtx3090", "cuda", 16, "fp16"),
    ("a6000", "cuda", 32, "bf16"), ("h100", "cuda", 64, "bf16"),
])
def test_hardware_group(choice, device, batch, precision):
    hw = instantiate(cfg_of(f"hardware={choice}").hardware)
    assert isinstance(hw, Hardware) and (hw.device, hw.batch_size, hw.precision) == (device, batch, precision)


def test_batch_size_override_and_rtx3090_switches():
    hw = instantiate(cfg_of("hardware=rtx3090", "hardware.batch_size=20").hardware)
    assert hw.batch_size == 20 and hw.num_workers == 8 and hw.pin_memory and hw.tf32 and hw.cudnn_benchmark


def test_models_and_optimizer():
    cfg = cfg_of("model.d_model=32", "model.nhead=4", "model.num_layers=1")
    model = instantiate(cfg.model, static_channels=5)
    assert isinstance(model, EmberFormer) and model.temporal.layers[0].self_attn.num_heads == 4
    assert len(model.temporal.layers) == 1
    opt = instantiate(cfg.optim)(model.param_groups())
    assert [(g["name"], g["lr"], g["weight_decay"]) for g in opt.param_groups] == \
        [("temporal", 1e-3, 1e-4), ("spatial", 1e-3, 1e-4)]
    opt = instantiate(cfg_of("optim=adam").optim)(model.param_groups())
    assert [(g["name"], g["lr"], g["weight_decay"]) for g in opt.param_groups] == \
        [("temporal", 1e-3, 1e-4), ("spatial", 1e-4, 1e-4)]
    baseline = instantiate(cfg_of("model=copy_last").model, static_channels=5)
    assert isinstance(baseline, CopyLast) and sum(p.numel() for p in baseline.parameters()) == 0


def test_data_loggers_trainer_and_presets(tmp_path):
    cfg = cfg_of("data.num_sequences=7", f"data.cache_dir={tmp_path}")
    dm = instantiate(cfg.data, batch_size=4, num_workers=0, pin_memory=False)
    assert isinstance(dm, SyntheticFireDataModule) and dm.gen["num_sequences"] == 7
    # data=deep_crown reads a real folder (nothing is generated): an empty one is refused, naming the layout
    with pytest.raises(InstantiationException) as e:
        instantiate(cfg_of("data=deep_crown", f"data.root={tmp_path}").data, batch_size=4, num_workers=0,
                    pin_memory=False)
    assert isinstance(e.value.__cause__, DataError) and "expected ROOT/landscape/" in str(e.value.__cause__)
    assert isinstance(instantiate(cfg_of("logger=none").logger), RunLogger)
    assert instantiate(cfg_of("logger=none").logger).wandb is None
    assert instantiate(cfg_of().logger).wandb.mode == "offline"
    assert instantiate(cfg_of("logger.mode=online").logger).wandb.mode == "online"
    tr = instantiate(cfg_of("trainer.epochs=3", "metrics.pred_thresh=0.6").trainer)
    assert isinstance(tr, Trainer) and tr.epochs == 3 and tr.thresh == 0.6
    seed = cfg_of("experiment=seed_rtx3090")
    assert seed.hardware.device == "cuda" and seed.hardware.precision == "fp16"
    assert seed.hardware.batch_size == 16 and seed.trainer.epochs == 50
    fast = cfg_of("debug=fast")
    assert fast.trainer.epochs == 2 and fast.data.num_sequences == 6 and fast.hardware.device == "cpu"


# ------------------------------------------------------------------ keys that moved or were removed
def test_logger_preview_samples_still_works_and_says_where_it_went(tmp_path):
    proc = run_app("train", ["logger=none", "logger.preview_samples=5", "--cfg", "job"], tmp_path,
                   env={"EMBERFORMER_CACHE": str(tmp_path / "cache")})
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr.strip() == ("Note: logger.preview_samples is now trainer.preview_samples "
                                   "(the old name still works)")
    cfg = OmegaConf.create(proc.stdout)
    assert cfg.trainer.preview_samples == 5 and "preview_samples" not in cfg.logger
    tr = instantiate(cfg_of("trainer.preview_samples=0").trainer)
    assert tr.settings.preview_samples == 0  # the trainer reads it (no previews written)


def test_an_old_name_in_a_yaml_file_says_where_it_went(tmp_path):
    (tmp_path / "myconf" / "logger").mkdir(parents=True)  # a user's own logger file, written before the move
    (tmp_path / "myconf" / "logger" / "mine.yaml").write_text(
        "_target_: emberformer.tracking.RunLogger\nwandb: null\npreview_samples: 3\n")
    proc = run_app("train", [f"hydra.searchpath=[file://{tmp_path / 'myconf'}]", "logger=mine"], tmp_path,
                   env={"EMBERFORMER_CACHE": str(tmp_path / "cache")})
    assert one_line_error(proc) == "Error: logger.preview_samples is now trainer.preview_samples: write it there"
    assert not (tmp_path / "cache").exists()


@pytest.mark.parametrize("arg,instead", [("hardware.name=a6000", "the preset is the choice hardware=NAME"),
                                         ("+hardware.name=x", "the preset is the choice hardware=NAME"),
                                         ("optimized_metric=val/iou", "a study optimises what train returns")])
def test_removed_keys_are_one_line_exit_2(capsys, arg, instead):
    with pytest.raises(SystemExit) as e:
        check_argv(["emberformer.train", "logger=none", arg])
    assert e.value.code == 2
    key = arg.lstrip("+").partition("=")[0]
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"Error: {key} is no longer a setting (nothing read it): {instead}")


def test_a_checkpoint_saved_with_old_keys_is_read_in_todays():
    saved = {"hardware": {"name": "auto", "batch_size": 16}, "optimized_metric": "val/f1",
             "logger": {"_target_": "emberformer.tracking.RunLogger", "wandb": None, "preview_samples": 3},
             "trainer": {"epochs": 2}}
    assert upgrade_saved(saved) == {"hardware": {"batch_size": 16}, "trainer": {"epochs": 2, "preview_samples": 3},
                                    "logger": {"_target_": "emberformer.tracking.RunLogger", "wandb": None}}


def test_evaluate_and_predict_compose_only_what_they_read():
    train_only = {"optim", "loss", "early_stopping", "logger", "trainer", "hparams_search", "experiment"}
    for app, extra in (("evaluate", {"ceiling", "split", "examples", "horizon", "seed"}),
                       ("predict", {"sequence", "out_dir", "horizon", "start"})):
        cfg = compose_config(config_name=app)
        assert set(cfg) == {"data", "model", "hardware", "metrics", "ckpt_path"} | extra, app
        assert not train_only & set(cfg)


@pytest.mark.parametrize("app,extra", [("evaluate", []), ("predict", ["sequence=1"])])
def test_every_scorer_checks_the_threshold_before_any_data_work(tmp_path, app, extra):
    proc = run_app(app, ["model=copy_last", "metrics.pred_thresh=1.5", *extra], tmp_path,
                   env={"EMBERFORMER_CACHE": str(tmp_path / "cache")})
    assert one_line_error(proc) == "Error: metrics.pred_thresh must be in (0, 1), got 1.5"
    assert not (tmp_path / "cache").exists()  # checked before the data is generated or read


def test_train_imports_no_optional_heavy_library(tmp_path, run_env):
    """A config mistake is reported without importing Optuna, PyTorchFire, matplotlib, W&B or
    transformers: the modules Hydra loads at start (the sweeper plugin, the SweepSummary callback)
    included, so the whole process is checked."""
    code = ("import json, runpy, sys\n"
            "sys.argv = ['emberformer.train', '+foo=1']\n"
            "try:\n    runpy.run_module('emberformer.train', run_name='__main__')\n"
            "except SystemExit as e:\n    code = e.code\n"
            "heavy = ('optuna', 'pytorchfire', 'matplotlib', 'wandb', 'transformers')\n"
            "print(json.dumps({'code': code, 'loaded': [m for m in heavy if m in sys.modules]}))\n")
    proc = run_module(None, ["-c", code], dict(run_env, EMBERFORMER_CACHE=str(tmp_path / "cache")), tmp_path)
    assert proc.stderr.strip() == "Error: foo is not a setting: nothing reads it (a typo? see the keys in conf/)"
    assert json.loads(proc.stdout) == {"code": 2, "loaded": []}
