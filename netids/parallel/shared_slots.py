"""Fixed-size slots in one shared memory map: a forked worker reads an item's arrays in place.

Handing a 1.3 MB batch to a worker through a file or a pipe copies it twice and makes the
kernel find fresh pages for it every time. A map made before forking is shared with the
children: the owner pickles the item with its arrays out of band (protocol 5) and copies their
bytes into a slot once; the worker unpickles with those bytes as buffers, so its arrays are
views of the slot, read where the owner wrote them. Slots are reused, their pages stay mapped.

Whoever owns a slot decides when it is free: here, the owner reuses one only after taking the
result of the item it held, when the worker is done with it.

>>> import numpy as np
>>> slots = SharedSlots(count=2, size=1 << 16)
>>> slots.put(1, {"n": 3, "x": np.arange(4.0)})
True
>>> got = slots.get(1)
>>> got["n"], got["x"].tolist()
(3, [0.0, 1.0, 2.0, 3.0])
>>> slots.put(0, np.zeros(1 << 20))  # too big for a slot: the caller sends it another way
False
"""

from __future__ import annotations

import mmap
import pickle
import struct

_HEADER = struct.Struct("<QQ")  # pickle length, number of out-of-band buffers
_LENGTH = struct.Struct("<Q")


class SharedSlots:
    """``count`` slots of ``size`` bytes in an anonymous shared map (inherited by fork)."""

    def __init__(self, count: int, size: int) -> None:
        self.count, self.size = count, size
        self._map = mmap.mmap(-1, count * size)  # MAP_SHARED | MAP_ANONYMOUS

    def put(self, slot: int, obj: object) -> bool:
        """Store ``obj`` in ``slot``; False (nothing stored) when it does not fit."""
        buffers: list[pickle.PickleBuffer] = []
        meta = pickle.dumps(obj, protocol=5, buffer_callback=buffers.append)
        raws = [b.raw() for b in buffers]
        needed = _HEADER.size + len(meta) + sum(_LENGTH.size + r.nbytes for r in raws)
        if needed > self.size:
            return False
        at = slot * self.size
        for piece in (_HEADER.pack(len(meta), len(raws)), meta):
            self._map[at:at + len(piece)] = piece
            at += len(piece)
        for raw in raws:
            self._map[at:at + _LENGTH.size] = _LENGTH.pack(raw.nbytes)
            at += _LENGTH.size
            self._map[at:at + raw.nbytes] = raw
            at += raw.nbytes
        return True

    def get(self, slot: int) -> object:
        """The object in ``slot``; its arrays are views of the slot (valid until it is reused)."""
        view = memoryview(self._map)
        at = slot * self.size
        meta_len, count = _HEADER.unpack_from(self._map, at)
        at += _HEADER.size
        meta = view[at:at + meta_len]
        at += meta_len
        buffers = []
        for _ in range(count):
            (length,) = _LENGTH.unpack_from(self._map, at)
            at += _LENGTH.size
            buffers.append(view[at:at + length])
            at += length
        return pickle.loads(meta, buffers=buffers)
