"""Device emulator: flash with A/B slots, boot, timing, battery, sensor feed."""
