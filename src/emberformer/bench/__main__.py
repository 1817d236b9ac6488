"""``python -m emberformer.bench [bench=table|data_loader|wsts_loader|ndws_loader] [group=option] [key=value] ...``"""
from __future__ import annotations

import sys
from typing import Any

import hydra
from omegaconf import DictConfig

from emberformer.cli.errors import hydra_errors, user_errors
from emberformer.bench.batch_table import bench_table
from emberformer.bench.data_loader import bench_data_loader
from emberformer.bench.ndws_loader import bench_ndws_loader
from emberformer.bench.wsts_loader import bench_wsts_loader
from emberformer.cli.run_config import CONF

KINDS = {"table": bench_table, "data_loader": bench_data_loader, "wsts_loader": bench_wsts_loader,
         "ndws_loader": bench_ndws_loader}


def bench(cfg: DictConfig) -> Any:
    if "bench" not in cfg or not isinstance(cfg.bench, DictConfig):
        raise ValueError("no bench config: use bench=table, bench=data_loader, bench=wsts_loader or bench=ndws_loader")
    kind = cfg.bench.get("kind")
    if kind not in KINDS:
        raise ValueError(f"bench.kind must be one of {', '.join(KINDS)}, got {kind!r}")
    return KINDS[kind](cfg)


@hydra.main(config_path=CONF, config_name="bench", version_base="1.3")
def main(cfg: DictConfig) -> None:
    with user_errors():
        bench(cfg)


if __name__ == "__main__":
    with hydra_errors(sys.argv, "bench"):
        main()
