"""``python -m emberformer.bench [bench=table|data_loader|wsts_loader|ndws_loader] [group=option] [key=value] ...``"""
from __future__ import annotations

from typing import Any

from omegaconf import DictConfig

from emberformer.cli.entry import hydra_app, start
from emberformer.bench.batch_table import bench_table
from emberformer.bench.data_loader import bench_data_loader
from emberformer.bench.ndws_loader import bench_ndws_loader
from emberformer.bench.wsts_loader import bench_wsts_loader

KINDS = {"table": bench_table, "data_loader": bench_data_loader, "wsts_loader": bench_wsts_loader,
         "ndws_loader": bench_ndws_loader}


def bench(cfg: DictConfig) -> Any:
    if "bench" not in cfg or not isinstance(cfg.bench, DictConfig):
        raise ValueError("no bench config: use bench=table, bench=data_loader, bench=wsts_loader or bench=ndws_loader")
    kind = cfg.bench.get("kind")
    if kind not in KINDS:
        raise ValueError(f"bench.kind must be one of {', '.join(KINDS)}, got {kind!r}")
    return KINDS[kind](cfg)


main = hydra_app("bench", bench)

if __name__ == "__main__":
    start(main, "bench")
