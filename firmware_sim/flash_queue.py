"""The device's uplink queue kept on the emulated flash (``telemetry/queue.json``, written atomically after each
tick that changed it), so records survive a power cut or a restart and keep their sequence numbers."""

from __future__ import annotations

from firmware_sim.storage import BLOCK_BYTES, FlashStorage
from kasmina_edge.net.uplink import QueueError, RecordQueue

QUEUE_FILE = "telemetry/queue.json"


class FlashQueue:
    """A :class:`RecordQueue` persisted on the emulated flash."""

    def __init__(self, storage: FlashStorage, capacity: int = 256) -> None:
        self.storage = storage
        self.bytes_written = 0
        self.blocks_written = 0
        path = storage.root / QUEUE_FILE
        self.recovered = False
        if path.exists():
            try:
                self.queue = RecordQueue.from_bytes(path.read_bytes())
                self.recovered = True
            except QueueError:
                self.queue = RecordQueue(capacity)
        else:
            self.queue = RecordQueue(capacity)

    def persist(self) -> bool:
        if not self.queue.dirty:
            return False
        data = self.queue.to_bytes()
        self.storage.write_atomic(QUEUE_FILE, data)
        self.bytes_written += len(data)
        self.blocks_written += -(-len(data) // BLOCK_BYTES)
        self.queue.dirty = False
        return True
