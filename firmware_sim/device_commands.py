"""What the emulated device does for each signed command it accepts: pause and resume adaptation, send an encrypted
ECG strip, change a setting, reboot, tear down a seed site; and the security alert a refused command raises.

The envelope, signature, freshness and nonce checks are ``net.commands.CommandHandler``'s; these handlers run only
for a command that passed them, and their return value is the body of the signed ack.
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING, Any

from kasmina_edge.contracts.errors import KasminaError
from kasmina_edge.contracts.lifecycle import Stage
from kasmina_edge.contracts.telemetry import AnomalyEvent, AnomalyKind, Severity
from kasmina_edge.net.commands import Action
from kasmina_edge.net.priority import Priority

if TYPE_CHECKING:
    from firmware_sim.telemetry import RuntimeTelemetry

SETTABLE = {"summary_every_s": (60.0, 86400.0), "batch_s": (0.0, 60.0)}  # what `send DEVICE set` may change
STRIP_MAX_S = 4.0  # the raw buffer holds 4 s


class DeviceCommandError(KasminaError):
    """A command the device accepted but cannot carry out (bad argument, nothing to send); the handler acks it
    refused. (The operator's side of a command that cannot be sent is ``net.commands.CommandError``.)"""


class DeviceCommands:
    """The command actions of one device; they act on its telemetry hook and, through it, its runtime."""

    def __init__(self, tel: RuntimeTelemetry) -> None:
        self.tel = tel

    def actions(self) -> dict[str, Action]:
        return {
            "pause": self.pause,
            "resume": self.resume,
            "request-strip": self.strip,
            "set": self.set_values,
            "reboot": self.reboot,
            "terminate-seed": self.terminate_seed,
        }

    def _set_adapt(self, adapt: bool) -> None:
        rt = self.tel.runtime
        if rt is not None and hasattr(rt, "config"):
            rt.config = replace(rt.config, adapt=adapt)

    def pause(self, args: Any, envelope: Any) -> dict[str, Any]:
        self.tel.paused = True
        self._set_adapt(False)
        return {"adapt": False}

    def resume(self, args: Any, envelope: Any) -> dict[str, Any]:
        self.tel.paused = False
        self._set_adapt(True)
        return {"adapt": True}

    def reboot(self, args: Any, envelope: Any) -> dict[str, Any]:
        """The device restarts after the chunk in hand (the ack goes first); what it keeps is what is on flash."""
        if args:
            raise DeviceCommandError(f"reboot takes no arguments (got {', '.join(sorted(args))})")
        self.tel.reboot_requested = True
        return {"reboot": "after the current chunk"}

    def terminate_seed(self, args: Any, envelope: Any) -> dict[str, Any]:
        """Administrative teardown of every seed kernel at ``site``: a live one is rolled back first, then each
        goes to TERMINATED (final: the controller never germinates it again in this run)."""
        site = args.get("site")
        if isinstance(site, bool) or not isinstance(site, int) or set(args) != {"site"}:
            raise DeviceCommandError("terminate-seed takes site=N (the seed site whose kernels go)")
        manager = getattr(self.tel.runtime, "manager", None)
        if manager is None:
            raise DeviceCommandError("no runtime yet")
        names = [n for n, k in manager.kernels.items() if k.site == site and manager.seeds[n].stage != Stage.TERMINATED]
        if not names:
            sites = sorted({k.site for k in manager.kernels.values()})
            raise DeviceCommandError(f"terminate-seed site={site}: no seed kernel there to terminate (sites: {sites})")
        for name in names:
            manager.retire(name, "operator_terminated")  # a live kernel: the site gets back what it ran before
            manager.seeds[name].move(Stage.TERMINATED, reason="operator: terminate-seed")
        return {"site": site, "terminated": names}

    def strip(self, args: Any, envelope: Any) -> dict[str, Any]:
        from kasmina_edge.net.commands import seal_strip

        tel = self.tel
        seconds = args.get("seconds", 2.0)
        if isinstance(seconds, bool) or not isinstance(seconds, int | float) or not 0 < seconds <= STRIP_MAX_S:
            raise DeviceCommandError(
                f"request-strip seconds={seconds!r}: must be in (0, {STRIP_MAX_S:g}] (the raw buffer holds {STRIP_MAX_S:g} s)"
            )
        if tel.runtime is None or tel.device_key is None:
            raise DeviceCommandError("no signal yet")
        sig, _ = tel.runtime.raw.view()
        fs = float(tel.runtime.fs)
        samples = sig[-int(seconds * fs) :]
        sealed = seal_strip(tel.device_key, tel.link.device_id, envelope.command.nonce, samples, fs)
        wire = len(sealed["ciphertext"]) // 2 + 12 + 4  # ciphertext + tag, IV, request id
        tel.link.send_control("strip", sealed, wire)
        return {"samples": int(samples.shape[0]), "fs": fs, "encrypted_bytes": wire}

    def set_values(self, args: Any, envelope: Any) -> dict[str, Any]:
        tel = self.tel
        changed: dict[str, Any] = {}
        for key, value in args.items():
            lo, hi = SETTABLE.get(key, (None, None))
            if lo is None or hi is None:
                raise DeviceCommandError(f"set {key}: not settable (settable: {', '.join(sorted(SETTABLE))})")
            if isinstance(value, bool) or not isinstance(value, int | float) or not lo <= value <= hi:
                raise DeviceCommandError(f"set {key}={value!r}: must be a number in [{lo:g}, {hi:g}]")
            changed[key] = float(value)
        for key, value in changed.items():
            if key == "summary_every_s":
                tel.summary_every_s = value
                tel.next_summary = tel.now + value
            elif key == "batch_s":
                tel.link.scheduler.plan = replace(tel.link.scheduler.plan, batch_s=value)
        return changed

    def security_alert(self, reason: Any, detail: str) -> None:
        """A refused command (bad signature, replay, stale): the platform's alert flag (the controller stops
        adapting) and a critical anomaly record."""
        tel = self.tel
        if tel.runtime is not None:
            tel.runtime.platform.security_alert = True
        alert = AnomalyEvent(0, tel.timestamp(tel.now), AnomalyKind.OTHER, Severity.CRITICAL, 0, 0, 1.0)
        tel.submit_priority(alert, Priority.CRITICAL)
