"""Fragmentation with forward error correction, in the manner of LoRaWAN fragmented data block transport.

The data is cut into ``n`` fragments of equal size (the last one zero-padded). The sender transmits the ``n``
fragments themselves, then ``m`` parity fragments, each the XOR of about half of the ``n`` chosen by the
pseudo-random line generator of the LoRa Alliance's Fragmented Data Block Transport specification (TS004:
PRBS23-driven ``matrix_line``). The receiver needs no retransmission: any set of fragments whose lines span
GF(2)^n gives the data back, which with ``m = n / 2`` parity fragments happens well past 20 % loss. The decoder
is Gaussian elimination over GF(2) on bit-packed rows, done incrementally as fragments arrive.

Written here because no maintained Python package implements TS004's code (the published reference is C code
inside LoRaMac-node); the code is a plain XOR parity code, a few dozen lines.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from kasmina_edge.contracts.errors import KasminaError


class FecError(KasminaError):
    """Fragments that cannot make the data (too few, wrong size or index)."""


def _prbs23(x: int) -> int:
    b0 = x & 1
    b1 = (x & 32) >> 5
    return (x >> 1) + ((b0 ^ b1) << 22)


def matrix_line(index: int, n: int) -> np.ndarray:
    """Which of the ``n`` data fragments parity fragment ``index`` (1-based) XORs together (TS004)."""
    line = np.zeros(n, dtype=bool)
    mm = 1 if n & (n - 1) == 0 else 0  # TS004: one more candidate when n is a power of two
    x = 1 + 1001 * index
    for _ in range(n // 2):
        r = 1 << 16
        while r >= n:
            x = _prbs23(x)
            r = x % (n + mm)
        line[r] = True
    if not line.any():  # n == 1: the parity fragment is the fragment itself
        line[0] = True
    return line


@dataclass(frozen=True)
class FragmentPlan:
    size: int  # bytes of data
    fragment_bytes: int
    n: int  # data fragments
    m: int  # parity fragments

    @classmethod
    def for_data(cls, size: int, fragment_bytes: int, redundancy: float = 0.5) -> FragmentPlan:
        if fragment_bytes < 1:
            raise FecError(f"fragment size {fragment_bytes} B: must be at least 1 B")
        n = max(1, math.ceil(size / fragment_bytes))
        return cls(size, fragment_bytes, n, max(1, math.ceil(n * redundancy)))

    @property
    def total(self) -> int:
        return self.n + self.m


def _rows(data: bytes, plan: FragmentPlan) -> np.ndarray:
    padded = data + bytes(plan.n * plan.fragment_bytes - len(data))
    return np.frombuffer(padded, dtype=np.uint8).reshape(plan.n, plan.fragment_bytes)


def encode_fragments(data: bytes, plan: FragmentPlan) -> list[bytes]:
    """The ``n`` data fragments then the ``m`` parity fragments (index i of the list is fragment i)."""
    rows = _rows(data, plan)
    out = [row.tobytes() for row in rows]
    for k in range(1, plan.m + 1):
        line = matrix_line(k, plan.n)
        out.append(np.bitwise_xor.reduce(rows[line], axis=0).tobytes())
    return out


class FragmentDecoder:
    """Incremental GF(2) elimination: feed fragments in any order, with gaps; ``done`` once the data is known."""

    def __init__(self, plan: FragmentPlan) -> None:
        self.plan = plan
        self.words = (plan.n + 63) // 64
        self._pivot_rows: dict[
            int, tuple[np.ndarray, np.ndarray]
        ] = {}  # pivot column -> (coeff bits, payload)
        self.received = 0
        self.useless = 0

    def _coeffs(self, index: int) -> np.ndarray:
        line = np.zeros(self.plan.n, dtype=bool)
        if index < self.plan.n:
            line[index] = True
        else:
            line = matrix_line(index - self.plan.n + 1, self.plan.n)
        padded = np.zeros(self.words * 64, dtype=bool)
        padded[: self.plan.n] = line
        return np.packbits(padded, bitorder="little")

    @staticmethod
    def _lowest(bits: np.ndarray) -> int:
        nz = np.flatnonzero(bits)
        if nz.size == 0:
            return -1
        byte = int(nz[0])
        value = int(bits[byte])
        return byte * 8 + (value & -value).bit_length() - 1

    def add(self, index: int, payload: bytes) -> bool:
        """Add fragment ``index``; returns True once every data fragment is known."""
        if not 0 <= index < self.plan.total:
            raise FecError(f"fragment index {index} outside 0..{self.plan.total - 1}")
        if len(payload) != self.plan.fragment_bytes:
            raise FecError(f"fragment {index}: {len(payload)} B, expected {self.plan.fragment_bytes} B")
        self.received += 1
        coeff = self._coeffs(index)
        data = np.frombuffer(payload, dtype=np.uint8).copy()
        # the stored rows are fully reduced (each holds its pivot and no other pivot column): clearing every
        # pivot column from the new row leaves its lowest set bit as a new pivot, or nothing
        for col, (c, d) in self._pivot_rows.items():
            if coeff[col >> 3] >> (col & 7) & 1:
                coeff ^= c
                data ^= d
        col = self._lowest(coeff)
        if col < 0:
            self.useless += 1  # a combination of what is already known
            return self.done
        byte, bit = col >> 3, col & 7
        for c, d in self._pivot_rows.values():
            if c[byte] >> bit & 1:
                c ^= coeff
                d ^= data
        self._pivot_rows[col] = (coeff, data)
        return self.done

    @property
    def done(self) -> bool:
        return len(self._pivot_rows) == self.plan.n

    @property
    def missing_rank(self) -> int:
        return self.plan.n - len(self._pivot_rows)

    def data(self) -> bytes:
        if not self.done:
            raise FecError(f"{self.missing_rank} of {self.plan.n} fragments still unknown")
        rows = [self._pivot_rows[i][1] for i in range(self.plan.n)]
        return b"".join(r.tobytes() for r in rows)[: self.plan.size]
