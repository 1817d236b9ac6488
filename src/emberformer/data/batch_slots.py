"""Shared-memory batch buffers that a DataLoader worker reuses once the trainer is done with them.

Why: a worker hands a batch over in shared memory, and a fresh shared-memory buffer for every
batch costs more than filling it: the pages are allocated, zeroed and mapped anew each time, and
on a VM that is most of a lean WildfireSpreadTS batch's cost (docs/benchmarks.md: reusing the
buffers doubles the loader's rate here). So each worker keeps a few buffers ("slots"). A slot's
first word is its flag: the number of the fill it holds, written by the worker when it fills the
slot, and back to free from the trainer's process when it has read the batch
(``SlotHandle.release``, called by ``on_device.finish`` once the batch is on the device; only the
handle of that fill can free it). The worker only ever writes a free slot;
when none is free (batches held and not yet finished), it takes a new buffer, so holding any
number of batches is safe, only slower. A slot is released once: finishing a batch twice is an
error, never a read of a buffer that may hold another batch by then.
"""
from __future__ import annotations

import math
import os

import torch
from torch.utils.data import get_worker_info

FREE = 0.0          # a slot's flag: FREE, or the number of the fill it holds
HEADER = 16          # floats before the data (the flag, then padding: the data stays 64-byte aligned)
GRAIN = 1 << 18      # slot capacities are whole multiples of 1 MiB of float32


def shared_tensor(n: int, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """A 1-D tensor of ``n`` elements in shared memory, uninitialised: what torch's collate makes
    in a worker, so sending it to the trainer's process copies nothing more."""
    storage = torch.empty(0, dtype=dtype)._typed_storage()._new_shared(n)
    return torch.empty(0, dtype=dtype).set_(storage)


class SlotHandle:
    """What travels with a batch in a slot: the slot's flag, for the trainer's process to hand
    the slot back. Not a tensor, so ``pin_memory`` leaves it as it is (a pinned copy of the flag
    would free nothing). A batch the trainer's process drops unfinished (a loader iterator left
    mid-epoch drops the batches it had prefetched) hands its slot back as it goes: the copy that
    arrives there is armed to, the worker's own copy never is."""

    def __init__(self, flag: torch.Tensor, key: tuple[int, int], gen: float, armed_in: int | None = None):
        self.flag, self.key, self.gen = flag, key, gen   # key: (worker pid, slot number); gen: this fill's mark
        self.armed_in, self.released = armed_in, False   # armed_in: the process the handle arrived in

    def __reduce__(self):
        return _arrived, (self.flag, self.key, self.gen)

    def _free(self) -> None:
        """Mark the slot free, only if it still holds this batch (a stale copy of the handle, in a
        forked child or a copy, finds another mark there and leaves it)."""
        if self.armed_in == os.getpid() and float(self.flag[0]) == self.gen:
            self.flag.fill_(FREE)

    def release(self) -> None:
        """The batch has been read: the worker may fill its slot again."""
        if self.released:
            raise RuntimeError("this batch was already finished and its shared buffer handed back to the "
                               "loader worker; finish each batch from the loader once")
        self.released = True
        self._free()

    def __del__(self) -> None:
        if not self.released:
            try:
                self._free()
            except Exception:   # at interpreter exit torch may be gone; nothing waits for the slot then
                pass


def _arrived(flag: torch.Tensor, key: tuple[int, int], gen: float) -> SlotHandle:
    """A handle unpickled in the trainer's process: armed there, and only there."""
    return SlotHandle(flag, key, gen, os.getpid())


class BatchSlots:
    """A worker's reusable buffers (at most ``count``), made on first use in the worker process."""

    def __init__(self, count: int = 6):
        self.count = int(count)
        self.slots: list[torch.Tensor] = []
        self.fills = 0          # each fill marks its slot with its own number (1 .. 2**23, exact in float32)

    def take(self, n: int) -> tuple[torch.Tensor, SlotHandle | None]:
        """(a float32 buffer of ``n`` elements, its handle): a free slot's, or in the main process
        (no worker: nothing is handed over) or with every slot busy, a new buffer and no handle."""
        if get_worker_info() is None:
            return torch.empty(n), None
        for i, slot in enumerate(self.slots):
            if float(slot[0]) == FREE:
                if slot.numel() - HEADER < n:        # too small for this batch: a larger one instead
                    slot = self.slots[i] = shared_tensor(HEADER + math.ceil(n / GRAIN) * GRAIN)
                self.fills = self.fills % (1 << 23) + 1
                slot[0] = float(self.fills)
                return slot[HEADER:HEADER + n], SlotHandle(slot[:1], (os.getpid(), i), float(self.fills))
        if len(self.slots) < self.count:
            self.slots.append(shared_tensor(HEADER + math.ceil(n / GRAIN) * GRAIN))
            return self.take(n)
        return shared_tensor(n), None


def hand_back(batch: dict) -> dict:
    """Give the batch's slot (``batch["slot"]``, if it has one) back to its worker: done by
    ``on_device.finish`` once every block is copied out, and by the loader benchmark, which does no
    device work, itself."""
    if batch.get("slot") is not None:
        batch["slot"].release()
    return batch
