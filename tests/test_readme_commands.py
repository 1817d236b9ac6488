"""Every ``python -m emberformer.<app> ...`` command that README.md and docs/*.md show parses as
written (issue 18 item 12): the suite's own argument check accepts it, Hydra's override parser
accepts each override, each group choice exists in conf/, and each key exists in the config the
command composes. Nothing is run; placeholders (DATE, TIME, PATH, shell variables) stay or are
given a value, since only the parsing is checked.
"""
from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import ChoiceSweep
from omegaconf import OmegaConf

from conftest import CONF, REPO
from emberformer import study
from emberformer.cli.errors import check_argv

DOCS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
APPS = {"train": "train", "evaluate": "evaluate", "predict": "predict", "bench": "bench"}
COMMAND = re.compile(r"-m emberformer\.(train|evaluate|predict|bench|study)(?=[\s`]|$)(.*)")
# group options that docs/extending.md tells the reader to create before the command it shows
CREATED_BY_THE_READER = {"model/last_frame_conv", "loss/bce_tversky", "data/my_fires"}


def _shell_variables(text: str) -> dict[str, str]:
    """Shell variables a code block sets (``B="..."``), and HOME: what the shell would expand."""
    found = {m.group(1): " ".join(m.group(2).split()) for m in re.finditer(r'^(\w+)="([^"]*)"', text, re.M)}
    return {"HOME": "/home/user", "p": "median", **found}


def _commands() -> list[tuple[str, str, list[str]]]:
    """(where, app, arguments) of every command line in README.md and docs/*.md."""
    out = []
    for doc in DOCS:
        text = doc.read_text()
        env = _shell_variables(text)
        for n, line in enumerate(text.splitlines(), start=1):
            for m in COMMAND.finditer(line):
                rest = m.group(2)
                if "`" in line[:m.start()] and line[:m.start()].count("`") % 2:  # inside a code span
                    rest = rest.split("`", 1)[0]
                rest = re.split(r"\s#|\s&&|\s\|\s", rest, maxsplit=1)[0]
                rest = re.sub(r"\$(\w+)", lambda v: env.get(v.group(1), v.group(0)), rest)
                out.append((f"{doc.name}:{n}", m.group(1), shlex.split(rest)))
    return out


COMMANDS = _commands()


def test_the_docs_show_commands_of_every_app():
    apps = {app for _, app, _ in COMMANDS}
    assert apps == {"train", "evaluate", "predict", "bench", "study"} and len(COMMANDS) > 40


def test_group_options_the_reader_creates_are_created_in_the_docs():
    text = (REPO / "docs" / "extending.md").read_text()
    for option in CREATED_BY_THE_READER:
        assert f"# conf/{option}.yaml" in text


def _check_hydra_command(app: str, args: list[str]) -> None:
    try:
        check_argv(["emberformer." + app, *args])  # the suite's own check (a '~' path, say)
    except SystemExit as e:
        pytest.fail(f"the suite refuses this command (exit {e.code})")
    overrides = [a for a in args if not a.startswith("-")]
    parsed = OverridesParser.create().parse_overrides(overrides)  # raises on a malformed override
    groups = {p.parent.name for p in CONF.glob("*/*.yaml")} | {"hydra/launcher", "hydra/sweeper"}
    plain = []
    for o in parsed:
        name = o.key_or_group
        if name in groups or name.startswith("hydra/"):
            value = o.value()
            # a sweep over group options (model=copy_last,unet): each option must exist
            for choice in (value.list if isinstance(value, ChoiceSweep) else [value]):
                assert f"{name}/{choice}" in CREATED_BY_THE_READER or name.startswith("hydra/") \
                    or (CONF / name / f"{choice}.yaml").is_file(), f"{name}={choice}: no conf/{name}/{choice}.yaml"
                if f"{name}/{choice}" in CREATED_BY_THE_READER:
                    return  # the rest of the command needs the reader's new file
        if not o.is_sweep_override():
            plain.append(o.input_line)
    cfg = _compose_with_hydra(plain, APPS[app])
    for o in parsed:
        key = o.key_or_group
        if key in groups or key.startswith("hydra/") or o.is_add() or o.is_delete():
            continue
        assert OmegaConf.select(cfg, key, default="<absent>") != "<absent>", f"{key}: no such key"


def _compose_with_hydra(overrides: list[str], config_name: str):
    from hydra import compose, initialize_config_dir

    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return compose(config_name=config_name, overrides=overrides, return_hydra_config=True)


@pytest.mark.parametrize("where,app,args", COMMANDS, ids=[f"{w} {a}" for w, a, _ in COMMANDS])
def test_documented_command_parses(where, app, args, tmp_path, capsys):
    if app == "study":  # argparse, not Hydra: the arguments are accepted (the folder is not there)
        assert study.main([str(tmp_path / a) if not a.startswith("-") else a for a in args]) == 2
        assert "is not a folder" in capsys.readouterr().err
        return
    _check_hydra_command(app, args)
