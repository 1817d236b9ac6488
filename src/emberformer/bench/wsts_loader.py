"""``bench=wsts_loader``: samples/s of the project's WildfireSpreadTS loader (slices of the decoded
cache's memory maps, sent lean: the crops' stored bands, made into the model's 40 channels on the
device) against the published loader's two paths on the same files: every access
decodes the sample's day GeoTIFFs, or reads its days from the fire's HDF5 file. One loader worker
each, the same training samples, crops and order."""
from __future__ import annotations

import functools
import shutil
import tempfile
import time
from pathlib import Path

import torch
from omegaconf import DictConfig

from emberformer.bench import loader_bench
from emberformer.bench.data_loader import sample_order
from emberformer.bench.wsts_samples import Hdf5PerAccess, TifPerAccess, write_hdf5
from emberformer.data.batch_slots import hand_back
from emberformer.data.wsts.on_device import finish
from emberformer.data.wsts.lean import LeanSamples, as_batch
from emberformer.data.wsts.samples import collate


def bench_wsts_loader(cfg: DictConfig) -> float:
    """Prints and writes (``bench_wsts_loader.md``, ``.json``) the table; returns the speedup of
    the project's loader over decoding the GeoTIFFs per access."""
    bench = loader_bench.set_up(cfg, "wsts_loader", "wsts", "n_leading_observations")
    data, bs = bench.data, bench.batch_size
    cached = data.datasets["train"]
    if cached.index.format != "tif":
        raise ValueError(f"bench=wsts_loader needs the GeoTIFF layout under data.root; {data.root} holds "
                         f"the {cached.index.format} layout")
    tmp = Path(tempfile.mkdtemp(prefix="hdf5-", dir=bench.run_dir))
    try:
        h5_root = write_hdf5(cached.index, tmp)
        dense = functools.partial(collate, roles=data.roles)
        lean = LeanSamples(cached, data.roles, data.spec)
        paths = (("project loader (decoded cache, memory maps)", lean, as_batch),
                 ("GeoTIFF decode per access (tifffile)", TifPerAccess(cached, cached.index.root), dense),
                 ("HDF5 read per access (h5py)", Hdf5PerAccess(cached, h5_root), dense))
        order = sample_order(len(cached), (bench.batches + 1) * bs, int(cfg.seed))
        cpu = torch.device("cpu")
        first = finish(lean.__getitems__(order[:1]), cpu)
        for name, ds, _ in paths[1:]:  # the same sample, value for value, once the device has made it
            other = dense([ds[order[0]]])
            if not all(torch.equal(first[k], other[k]) for k in ("x", "target", "valid")):
                raise RuntimeError(f"{name} gives another sample than the project's loader")
        for f in (*cached.index.root.rglob("*.tif"), *h5_root.rglob("*.hdf5")):
            f.read_bytes()  # every path reads from the page cache
        header = (f"Data: {len(cached)} train samples of {len(cached.fires)} fires ({data.root}), "
                  f"n_leading_observations {cached.n}, crop {cached.crop_size} px, features {data.features} "
                  f"({first['x'].shape[2]} channels) | batch {bs}, {bench.timing}, same samples in the same order for "
                  f"all, files in the page cache")
        print(header, flush=True)
        results = loader_bench.measure(bench, paths, order, hand_back)
        device_ms = finish_ms(lean.__getitems__(order[:bs]), min(bench.batches, 5))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    speedups = loader_bench.speedups(results)
    tif, h5 = (speedups[name] for name, _, _ in paths[1:])
    ours = results[0]["samples_per_s"]
    serial = 1.0 / (1.0 / ours + device_ms / 1000 / bs)
    note = (f"The project loader sends the crops' stored bands; the device makes the 40-channel input "
            f"(on_device.finish: pad, flip, standardise, one-hot). Run here on the CPU that costs "
            f"{device_ms:.1f} ms per batch of {bs}; if it were paid in series with the loader on this "
            f"CPU: {serial:.1f} samples/s ({serial / results[1]['samples_per_s']:.1f}x the GeoTIFF path). "
            f"On a GPU it is a few elementwise kernels beside the model.")
    loader_bench.report(bench, "wsts_loader", "WSTS", header, results,
                        f"{note}\n\nspeedup: {tif:.1f}x over GeoTIFF decode per access, {h5:.1f}x over HDF5 read per access",
                        {"tif_per_access": tif, "hdf5_per_access": h5, "device_finish_ms_per_batch": device_ms,
                         "tif_per_access_with_finish_on_cpu": serial / results[1]["samples_per_s"]})
    return tif


def finish_ms(batch: dict, repeats: int) -> float:
    """Milliseconds per call of ``on_device.finish`` on ``batch`` here, on the CPU."""
    cpu = torch.device("cpu")
    finish(batch, cpu)
    t0 = time.perf_counter()
    for _ in range(repeats):
        finish(batch, cpu)
    return 1000 * (time.perf_counter() - t0) / repeats
