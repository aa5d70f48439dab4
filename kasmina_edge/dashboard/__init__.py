"""The web dashboard and the fleet tools over the telemetry store (issue 20)."""
