"""The contracts' demo step: telemetry frames on a LoRaWAN budget, and a signed command refused on replay."""

from __future__ import annotations

import secrets
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

from kasmina_edge.contracts import codec
from kasmina_edge.contracts.commands import Rejected, Verifier, sign
from kasmina_edge.contracts.lifecycle import Stage
from kasmina_edge.contracts.telemetry import (
    BeatCounts,
    DeviceStatus,
    ErrorFlags,
    ReasonCode,
    Record,
    SeedEvent,
    SequenceCounter,
    Slot,
)


def _records(now: int) -> list[Record]:
    seq = SequenceCounter()
    return [
        DeviceStatus(seq.next(), now, 87, 5 * 3600, Slot.A, 3, ErrorFlags.NONE),
        BeatCounts(seq.next(), now, 300, 352, 4, 11, 0, 2),
        SeedEvent(seq.next(), now, 1, 0, Stage.PROBATIONARY, Stage.CULLED, ReasonCode.CONDITION_CLEARED),
    ]


def demo_step(console: Console, workdir: Path) -> None:
    now = int(time.time())
    table = Table(title="telemetry frames (binary, CRC-checked)")
    for col, justify in (
        ("record", "left"),
        ("bytes", "right"),
        ("limit", "right"),
        ("hex", "left"),
        ("decoded", "left"),
    ):
        table.add_column(col, justify=justify, overflow="fold")  # type: ignore[arg-type]  # whole at 80 columns
    for record in _records(now):
        frame = codec.encode(record)
        back = codec.decode(frame)
        if back != codec.quantize(record):
            raise AssertionError(f"{type(record).__name__} did not survive its frame")
        limit = codec.MAX_HEARTBEAT_BYTES if isinstance(record, DeviceStatus) else codec.MAX_FRAME_BYTES
        fields = codec.to_dict(back)
        summary = ", ".join(
            f"{k}={v}" for k, v in fields.items() if k not in ("version", "type", "timestamp")
        )
        table.add_row(type(record).__name__, str(len(frame)), str(limit), frame.hex(), summary)
    console.print(table)

    key = secrets.token_bytes(32)
    verifier = Verifier(key, "demo-device")
    signed = sign(key, "demo-device", "pause", {"reason": "demo"})
    command = verifier.verify(signed.to_json())
    console.print(f"signed command [bold]{command.name}[/] (nonce {command.nonce[:8]}…): [green]accepted[/]")
    try:
        verifier.verify(signed.to_json())
    except Rejected as exc:
        console.print(f"the same command replayed: [red]refused[/] ({exc.reason.value})")
    else:
        raise AssertionError("a replayed command was accepted")
