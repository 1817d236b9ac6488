"""Whether a scored split holds sequences the checkpoint trained or was validated on.

``evaluate`` rebuilds the data from the checkpoint's config, so by default it scores the run's own
held-out split. An override that reshuffles the split (``data.split_seed=1``, ``data.splits=…``)
scores a "test" split that may contain the run's training sequences: its numbers then say how well
the model remembers, not how well it predicts. The checkpoint's split is a pure function of the
sequence ids, its ``data.splits`` and its ``data.split_seed`` (:func:`split_sequences`), so it is
recomputed here and compared with the scored one.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

from emberformer.data.datamodule import split_sequences
from emberformer.training.checkpoint import config_differences

# data keys that decide how the sequences are split or read, not which sequences there are
NOT_IDENTITY = ("split_seed", "splits", "max_history", "progress", "cache_dir", "on_bad_sequence",
                "batch_size", "num_workers", "pin_memory")


def identity(data: Mapping[str, Any]) -> dict[str, Any]:
    """The keys of a data config that decide which sequences it holds (``root`` resolved)."""
    out = {k: v for k, v in data.items() if k not in NOT_IDENTITY}
    if out.get("root") is not None:
        out["root"] = str(Path(str(out["root"])).expanduser().resolve())
    return out


def overlap(saved_data: Mapping[str, Any], current_data: Mapping[str, Any], scored_split: str,
            split: Mapping[str, list[int]]) -> dict[str, int] | None:
    """``{"train": n, "val": m, "scored_sequences": k}``: how many of the ``k`` sequences of
    ``scored_split`` (of the scored data's ``split``) the checkpoint trained / validated on.

    None when the scored data is not the checkpoint's data set (another root, other generator
    settings: its sequence ids name other fires) or its split cannot be recomputed.
    """
    if "split_seed" not in saved_data or "splits" not in saved_data:
        return None
    if config_differences(identity(saved_data), identity(current_data), "data."):
        return None
    ids = sorted({i for seqs in split.values() for i in seqs})
    own = split_sequences(ids, tuple(float(f) for f in saved_data["splits"]), int(saved_data["split_seed"]))
    scored = set(split[scored_split])
    return {"train": len(scored & set(own["train"])), "val": len(scored & set(own["val"])),
            "scored_sequences": len(scored)}


def reshuffled(saved_data: Mapping[str, Any], current_data: Mapping[str, Any]) -> bool:
    """Whether this command splits the sequences otherwise than the checkpoint's run did."""
    return any(saved_data.get(k) != current_data.get(k) for k in ("split_seed", "splits"))


def warning(entry: Mapping[str, int] | None, scored_split: str, reshuffle: bool) -> str | None:
    """The one WARNING line for an overlap (None when there is none)."""
    if not entry or not (entry["train"] or entry["val"]):
        return None
    why = ("this command's data.split_seed/data.splits differ from the checkpoint's; leave them out to score "
           "its own split" if reshuffle else f"split={scored_split} is one of the splits the run trained or "
           "early-stopped on; split=test is its held-out one")
    return (f"WARNING: the scored {scored_split} split is not held out: {entry['train']} of its "
            f"{entry['scored_sequences']} sequences were trained on and {entry['val']} validated on by this "
            f"checkpoint, so these scores overstate the model ({why})")
