"""``bench=wsts_loader``: samples/s of the project's WildfireSpreadTS loader (slices of the decoded
cache's memory maps) against the published loader's two paths on the same files: every access
decodes the sample's day GeoTIFFs, or reads its days from the fire's HDF5 file. One loader worker
each, the same training samples, crops and order."""
from __future__ import annotations

import json
import shutil
import sys
import tempfile
from pathlib import Path

import torch
from hydra.utils import instantiate
from omegaconf import DictConfig

from emberformer.bench.data_loader import batches_and_size, loader_rate, sample_order
from emberformer.bench.wsts_samples import Hdf5PerAccess, TifPerAccess, write_hdf5
from emberformer.cli.run_folder import run_folder
from emberformer.data.wsts.samples import collate

WORKERS = 1




def bench_wsts_loader(cfg: DictConfig) -> float:
    """Prints and writes (``bench_wsts_loader.md``, ``.json``) the table; returns the speedup of
    the project's loader over decoding the GeoTIFFs per access."""
    run_dir = run_folder()
    hw = instantiate(cfg.hardware)
    loader_kw = hw.loader_settings()
    batches, bs = batches_and_size(cfg.bench, loader_kw["batch_size"])
    data = instantiate(cfg.data, **loader_kw)
    if not hasattr(data, "n_leading_observations"):
        raise ValueError("bench=wsts_loader measures data=wsts (it sets it): drop the data= override")
    data.setup()
    cached = data.datasets["train"]
    if cached.index.format != "tif":
        raise ValueError(f"bench=wsts_loader needs the GeoTIFF layout under data.root; {data.root} holds "
                         f"the {cached.index.format} layout")
    tmp = Path(tempfile.mkdtemp(prefix="hdf5-", dir=run_dir))
    try:
        h5_root = write_hdf5(cached.index, tmp)
        paths = (("project loader (decoded cache, memory maps)", cached),
                 ("GeoTIFF decode per access (tifffile)", TifPerAccess(cached, cached.index.root)),
                 ("HDF5 read per access (h5py)", Hdf5PerAccess(cached, h5_root)))
        order = sample_order(len(cached), (batches + 1) * bs, int(cfg.seed))
        first = cached[order[0]]
        for name, ds in paths[1:]:  # the same sample, value for value
            other = ds[order[0]]
            if not all(torch.equal(first[k], other[k]) for k in ("x", "target", "valid")):
                raise RuntimeError(f"{name} gives another sample than the project's loader")
        for f in (*cached.index.root.rglob("*.tif"), *h5_root.rglob("*.hdf5")):
            f.read_bytes()  # every path reads from the page cache
        header = (f"Data: {len(cached)} train samples of {len(cached.fires)} fires ({data.root}), "
                  f"n_leading_observations {cached.n}, crop {cached.crop_size} px, features {data.features} "
                  f"({first['x'].shape[1]} channels) | batch {bs}, {WORKERS} worker, 1 warm-up + {batches} "
                  f"measured batches, same samples in the same order for all, files in the page cache")
        print(header, flush=True)
        results = []
        for name, ds in paths:
            r = loader_rate(ds, order, bs, WORKERS, bool(loader_kw["pin_memory"]), collate, count_key="x")
            results.append({"dataset": name, "workers": WORKERS, **r})
            print(f"  {name}: {r['samples_per_s']:.1f} samples/s", file=sys.stderr, flush=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    ours = results[0]["samples_per_s"]
    speedups = {r["dataset"]: ours / r["samples_per_s"] for r in results}
    table = ["| WSTS dataset | Workers | Samples/s | Time/batch | Project loader's speedup |",
             "|--------------|---------|-----------|------------|--------------------------|"]
    table += [f"| {r['dataset']} | {WORKERS} | {r['samples_per_s']:.1f} | {1000 * r['batch_s']:.1f} ms | "
              f"{speedups[r['dataset']]:.1f}x |" for r in results]
    tif, h5 = (speedups[name] for name, _ in paths[1:])
    lines = ["", *table, "", f"speedup: {tif:.1f}x over GeoTIFF decode per access, {h5:.1f}x over HDF5 read per access"]
    print("\n".join(lines), flush=True)
    (run_dir / "bench_wsts_loader.md").write_text("\n".join(["# WSTS data loader benchmark", "", header, *lines, ""]))
    (run_dir / "bench_wsts_loader.json").write_text(json.dumps(
        {"header": header, "batch_size": bs, "batches": batches, "results": results,
         "speedup": {"tif_per_access": tif, "hdf5_per_access": h5}}, indent=1))
    return tif
