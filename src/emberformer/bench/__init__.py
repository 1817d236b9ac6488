"""``python -m emberformer.bench``: how big a batch fits and how fast it trains, and how fast data loads.

``bench=table`` (default) runs real training steps (forward under the hardware's autocast, loss,
backward through its grad scaler, optimizer step) on real batches of the train loader for every
batch size in ``bench.batch_sizes`` and prints the reference guide's "Batch Size Impact" table: peak
memory, time per step, samples/s, the share of the step spent waiting for data and the estimated
epoch time, with the largest batch size that fits marked. An out-of-memory error is a row, not a
crash. ``bench=data_loader`` compares the decoded-frame cache with decoding the PNGs per sample.

Both compose the same config groups as ``emberformer.train`` (conf/bench.yaml) and write their
tables into the run folder ``outputs/bench/DATE/TIME/``.
"""
