"""Config keys that moved or were removed, so that users' commands, sweeps and old checkpoints
keep working: an old name on the command line sets its new key and says where it went; a removed
key (nothing read it) is one line saying what to do instead; a checkpoint's saved config is read
in today's keys."""
from __future__ import annotations

import sys
from typing import Any

# old name -> new name
MOVED_KEYS = {"logger.preview_samples": "trainer.preview_samples"}
# removed key -> what to do instead
REMOVED_KEYS = {
    "hardware.name": "the preset is the choice hardware=NAME (auto, cpu, rtx3090, a6000, h100)",
    "optimized_metric": "a study optimises what train returns, the best value of early_stopping.monitor",
}


def moved_key_note(key: str) -> str | None:
    """``OLD is now NEW`` for a key that moved, None for any other key."""
    return f"{key} is now {MOVED_KEYS[key]}" if key in MOVED_KEYS else None


def removed_key_error(key: str) -> str | None:
    """The one-line error for a key that no longer exists, None for any other key."""
    if key not in REMOVED_KEYS:
        return None
    return f"{key} is no longer a setting (nothing read it): {REMOVED_KEYS[key]}"


def rename_argv(argv: list[str]) -> None:
    """Command-line overrides under an old name (``logger.preview_samples=4``, also ``+…`` and
    sweeps such as ``-m logger.preview_samples=1,2``) are given to Hydra under the new one, with a
    note on stderr; ``argv`` is changed in place (it is ``sys.argv``, which Hydra reads)."""
    for i, arg in enumerate(argv[1:], 1):
        key, eq, value = arg.partition("=")
        old = key.lstrip("+")
        if eq and old in MOVED_KEYS:
            argv[i] = f"{MOVED_KEYS[old]}={value}"
            print(f"Note: {moved_key_note(old)} (the old name still works)", file=sys.stderr, flush=True)


def upgrade_saved(config: dict[str, Any]) -> dict[str, Any]:
    """A checkpoint's saved config in today's keys: moved values under their new names (a new
    name already there wins), removed keys dropped. Silent: the user wrote none of them."""
    def pop(node: Any, path: str) -> tuple[bool, Any]:
        *parents, leaf = path.split(".")
        for p in parents:
            node = node.get(p) if isinstance(node, dict) else None
        if isinstance(node, dict) and leaf in node:
            return True, node.pop(leaf)
        return False, None

    for old, new in MOVED_KEYS.items():
        found, value = pop(config, old)
        *parents, leaf = new.split(".")
        node = config
        for p in parents:
            node = node.setdefault(p, {})
        if found and value is not None and leaf not in node:
            node[leaf] = value
    for key in REMOVED_KEYS:
        pop(config, key)
    return config
