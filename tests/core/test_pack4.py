"""4-bit packing, version 3: the graph DEFLATE-compressed beside the nibbles, unpacked byte-exact."""

from __future__ import annotations

import hashlib
import struct
import zlib

import numpy as np
import pytest

from kasmina_edge.core.pack4 import MAGIC, MAGIC_DEFLATE, PackError, pack_file, unpack_file


def _kernel_like(n_weights: int, graph: int) -> tuple[bytes, list[tuple[int, int]]]:
    """A file that is mostly graph (repetitive tables, padding) around one 4-bit weight buffer."""
    rng = np.random.default_rng(1)
    table = b"".join(struct.pack("<iif", i, i % 7, 0.0123 * (i % 5)) + b"\x00" * 4 for i in range(graph // 16))
    weights = rng.integers(-7, 8, n_weights).astype(np.int8).tobytes()
    return table + weights + table[: graph // 3], [(len(table), n_weights)]


def test_deflated_container_unpacks_byte_exact_and_is_smaller() -> None:
    data, ranges = _kernel_like(600, 3000)
    v2, v3 = pack_file(data, ranges), pack_file(data, ranges, deflate=True)
    assert v2[:4] == MAGIC and v3[:4] == MAGIC_DEFLATE
    digest = hashlib.sha256(data).hexdigest()
    assert unpack_file(v3, sha256=digest) == data and unpack_file(v2, sha256=digest) == data
    assert len(v3) < 0.65 * len(data)  # the graph shrinks; 600 weights are 300 bytes of nibbles
    assert len(v3) < len(v2) - 1000


def test_incompressible_rest_stays_version_2() -> None:
    rng = np.random.default_rng(2)
    data = rng.bytes(200) + rng.integers(-7, 8, 64).astype(np.int8).tobytes() + rng.bytes(50)
    assert pack_file(data, [(200, 64)], deflate=True)[:4] == MAGIC  # random bytes do not deflate


def test_damaged_deflated_container_is_refused() -> None:
    data, ranges = _kernel_like(100, 2000)
    blob = bytearray(pack_file(data, ranges, deflate=True))
    head = 14 + 8 * len(ranges)
    (n,) = struct.unpack_from("<I", blob, head)
    blob[head + 4 + n // 2] ^= 0x5A  # inside the compressed graph
    with pytest.raises(PackError):
        unpack_file(bytes(blob))
    with pytest.raises(PackError, match="truncated"):
        unpack_file(bytes(blob[: head + 4 + n - 5]))
    assert zlib.crc32(data) == struct.unpack_from("<I", pack_file(data, ranges, deflate=True), 8)[0]
