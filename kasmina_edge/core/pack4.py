"""4-bit weights packed two per byte for the trip over the air, unpacked byte-exact on load.

A 4-bit kernel is exported as an ordinary int8 model (TFLite or ONNX) whose weight tensors only hold
values in [-8, 7]. What travels is a *packed artifact*: the model file with those weight bytes cut
out, followed by the same weights as nibbles. Unpacking puts every byte back, so the loaded model is
the very file the build tested (its SHA-256 is checked).

Container (little-endian, 14 + 8 bytes per range of overhead — kernels are small, so it must be):
``b"KP4\\x02"``, u32 original size, u32 CRC-32 of the original, u16 range count, then per range u32
offset and u32 length, the file minus the ranges, then the nibbles of each range in order (first
value in the low nibble, as TFLite Micro packs int4). The bundle manifest carries the original's
SHA-256; pass it to :func:`unpack_file` to check that too.

A kernel's file is mostly graph (tensor tables, quantization parameters, names, flatbuffer padding), so
packing the weights alone saved under 10 % of a small kernel. Version 3 (``b"KP4\\x03"``, what
:func:`pack_artifact` writes) stores the file minus the ranges DEFLATE-compressed (zlib, a u32 length before
it): the graph shrinks to about a third and the 4-bit weights are what is left. The device inflates it
(Python's zlib; on a microcontroller a few-KB inflater such as uzlib) into the very file the build tested,
so its arena is unchanged. Version 2 is still read.

Only numpy and the standard library: the device side imports this without torch.
"""

from __future__ import annotations

import hashlib
import struct
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from kasmina_edge.contracts.bundle import Bundle
    from kasmina_edge.contracts.manifest import ArtifactEntry

MAGIC = b"KP4\x02"
MAGIC_DEFLATE = b"KP4\x03"
_LEN = struct.Struct("<I")
_HEAD = struct.Struct("<4sIIH")
_RANGE = struct.Struct("<II")
PACKED_SUFFIX = ".p4"


class PackError(ValueError):
    """A packed artifact that is malformed or does not unpack to the file it names."""


def pack_nibbles(values: np.ndarray) -> bytes:
    """int8 values in [-8, 7] → bytes, two per byte, the first value in the low nibble."""
    v = np.asarray(values).reshape(-1).astype(np.int16)
    if v.size and (v.min() < -8 or v.max() > 7):
        raise PackError(f"values outside the 4-bit range [-8, 7]: min {v.min()}, max {v.max()}")
    nib = (v & 0xF).astype(np.uint8)
    if nib.size % 2:
        nib = np.append(nib, np.uint8(0))
    return bytes((nib[0::2] | (nib[1::2] << 4)).astype(np.uint8).tobytes())


def unpack_nibbles(data: bytes, count: int) -> np.ndarray:
    """The inverse of :func:`pack_nibbles`: ``count`` int8 values."""
    raw = np.frombuffer(data, dtype=np.uint8)
    if raw.size * 2 < count:
        raise PackError(f"{raw.size} packed bytes cannot hold {count} values")
    nib = np.empty(raw.size * 2, dtype=np.uint8)
    nib[0::2] = raw & 0xF
    nib[1::2] = raw >> 4
    signed = nib[:count].astype(np.int8)
    signed[signed > 7] -= 16
    return signed


def _check_ranges(size: int, ranges: Sequence[tuple[int, int]]) -> list[tuple[int, int]]:
    out = sorted((int(o), int(n)) for o, n in ranges if n > 0)
    end = 0
    for off, n in out:
        if off < end or off + n > size:
            raise PackError(f"byte range ({off}, {n}) overlaps another or leaves the file ({size} bytes)")
        end = off + n
    return out


def pack_file(data: bytes, ranges: Sequence[tuple[int, int]], *, deflate: bool = False) -> bytes:
    """Pack the int8 bytes at ``ranges`` (each value in [-8, 7]) into nibbles; keep the rest as is, or with
    ``deflate`` compressed (version 3; where compressing does not make it smaller, version 2)."""
    spans = _check_ranges(len(data), ranges)
    rest: list[bytes] = []
    nibbles: list[bytes] = []
    pos = 0
    for off, n in spans:
        rest.append(data[pos:off])
        nibbles.append(pack_nibbles(np.frombuffer(data, dtype=np.int8, count=n, offset=off)))
        pos = off + n
    rest.append(data[pos:])
    kept = b"".join(rest)
    squeezed = zlib.compress(kept, 9) if deflate else b""
    v3 = deflate and _LEN.size + len(squeezed) < len(kept)
    header = _HEAD.pack(MAGIC_DEFLATE if v3 else MAGIC, len(data), zlib.crc32(data), len(spans)) + b"".join(
        _RANGE.pack(o, n) for o, n in spans
    )
    body = _LEN.pack(len(squeezed)) + squeezed if v3 else kept
    return header + body + b"".join(nibbles)


def is_packed(blob: bytes) -> bool:
    return blob[:4] in (MAGIC, MAGIC_DEFLATE)


def _inflated(blob: bytes, head_len: int) -> tuple[bytes, bytes]:
    """(the file minus the ranges, the nibbles) of a version 3 container."""
    if len(blob) < head_len + _LEN.size:
        raise PackError("packed artifact truncated in its header")
    (n,) = _LEN.unpack_from(blob, head_len)
    start = head_len + _LEN.size
    if len(blob) < start + n:
        raise PackError("packed artifact truncated in its compressed part")
    try:
        kept = zlib.decompress(blob[start : start + n])
    except zlib.error as exc:
        raise PackError(f"packed artifact's compressed part is corrupt ({exc})") from None
    return kept, blob[start + n :]


def unpack_file(blob: bytes, sha256: str | None = None) -> bytes:
    """The original file, byte for byte; raises :class:`PackError` if its CRC-32 (or the given
    SHA-256, from the manifest) does not match."""
    if len(blob) < _HEAD.size or not is_packed(blob):
        raise PackError("not a packed artifact (bad magic)")
    _, size, crc, count = _HEAD.unpack_from(blob, 0)
    head_len = _HEAD.size + count * _RANGE.size
    if len(blob) < head_len:
        raise PackError("packed artifact truncated in its header")
    spans = [_RANGE.unpack_from(blob, _HEAD.size + i * _RANGE.size) for i in range(count)]
    _check_ranges(size, spans)
    kept = size - sum(n for _, n in spans)
    nibble_bytes = sum((n + 1) // 2 for _, n in spans)
    if blob[:4] == MAGIC_DEFLATE:
        rest, packed = _inflated(blob, head_len)
        if len(rest) != kept or len(packed) != nibble_bytes:
            raise PackError("packed artifact's parts do not have the sizes its header describes")
    else:
        body = blob[head_len:]
        if len(body) != kept + nibble_bytes:
            raise PackError(f"packed artifact body is {len(body)} bytes, its header describes a different size")
        rest, packed = body[:kept], body[kept:]
    out = bytearray(size)
    src = 0
    pos = 0
    nib_pos = 0
    for off, n in spans:
        chunk = off - pos
        out[pos:off] = rest[src : src + chunk]
        src += chunk
        nbytes = (n + 1) // 2
        out[off : off + n] = unpack_nibbles(packed[nib_pos : nib_pos + nbytes], n).tobytes()
        nib_pos += nbytes
        pos = off + n
    out[pos:] = rest[src:]
    result = bytes(out)
    if zlib.crc32(result) != crc:
        raise PackError("unpacked artifact does not match its CRC-32")
    if sha256 is not None and hashlib.sha256(result).hexdigest() != sha256:
        raise PackError("unpacked artifact does not match the SHA-256 in the manifest")
    return result


# ------------------------------------------------------------------ finding 4-bit weights

_WEIGHT_OPS = {"CONV_2D": 1, "DEPTHWISE_CONV_2D": 1, "FULLY_CONNECTED": 1}


def _fits4(arr: np.ndarray) -> bool:
    return bool(arr.size) and int(arr.min()) >= -8 and int(arr.max()) <= 7


def tflite_int4_ranges(data: bytes) -> list[tuple[int, int]]:
    """Byte ranges of the int8 conv/fully-connected weights of a TFLite model that fit in 4 bits."""
    from kasmina_edge.core.tflite_graph import buffer_ranges, read_graph

    graph = read_graph(data)
    spans = buffer_ranges(data)
    found: dict[int, tuple[int, int]] = {}
    for op in graph.ops:
        slot = _WEIGHT_OPS.get(op.name)
        if slot is None or len(op.inputs) <= slot or op.inputs[slot] < 0:
            continue
        t = graph.tensors[op.inputs[slot]]
        if t.dtype != "int8" or t.buffer not in spans:
            continue
        off, n = spans[t.buffer]
        if _fits4(np.frombuffer(data, dtype=np.int8, count=n, offset=off)):
            found[t.buffer] = (off, n)
    return sorted(found.values())


def onnx_int4_ranges(data: bytes) -> list[tuple[int, int]]:
    """Byte ranges of the int8 initializers feeding DequantizeLinear that fit in 4 bits.

    Each initializer's raw bytes are located in the serialized file; one that occurs more than once
    (so cannot be told apart) is left unpacked.
    """
    import onnx
    from onnx import numpy_helper

    model = onnx.load_from_string(data)
    deq_inputs = {n.input[0] for n in model.graph.node if n.op_type == "DequantizeLinear"}
    spans: list[tuple[int, int]] = []
    for init in model.graph.initializer:
        if init.name not in deq_inputs or init.data_type != onnx.TensorProto.INT8 or not init.raw_data:
            continue
        if not _fits4(numpy_helper.to_array(init)):
            continue
        raw = bytes(init.raw_data)
        off = data.find(raw)
        if off < 0 or data.find(raw, off + 1) >= 0:
            continue
        spans.append((off, len(raw)))
    return sorted(spans)


@dataclass(frozen=True)
class PackReport:
    unpacked_bytes: int  # the model file as built (int8 storage)
    packed_bytes: int  # what travels
    weight_values: int  # 4-bit weights packed

    @property
    def ratio(self) -> float:
        return self.packed_bytes / self.unpacked_bytes if self.unpacked_bytes else 1.0


def pack_artifact(data: bytes, fmt: str) -> tuple[bytes, PackReport]:
    """Pack a TFLite (``fmt="tflite"``) or ONNX (``fmt="onnx"``) 4-bit kernel; check it unpacks exactly."""
    ranges = tflite_int4_ranges(data) if fmt == "tflite" else onnx_int4_ranges(data)
    if not ranges:
        raise PackError(f"no 4-bit weights found in the {fmt} artifact")
    blob = pack_file(data, ranges, deflate=True)
    if unpack_file(blob) != data:  # pragma: no cover - unpack_file already checks the digest
        raise PackError("packed artifact does not unpack to the original")
    return blob, PackReport(len(data), len(blob), sum(n for _, n in ranges))


def artifact_payload(bundle: Bundle, entry: ArtifactEntry) -> bytes:
    """The artifact as a backend loads it: 4-bit packed artifacts unpacked and hash-checked (PackError)."""
    data = bundle.read(entry.file)
    return unpack_file(data, entry.unpacked_sha256) if entry.packed else data
