"""Child process for TFLite Micro: load models with a given arena, report allocations, run inputs.

Run as ``python -m kasmina_edge.core._tflm_worker JOB.json``. A too-small arena can crash the
process (a 4,096 B arena segfaulted the tflite-micro Python interpreter on a 49 k-parameter CNN rather
than raise), which is why the parent only ever talks to this one
through files and exit codes. For each job it prints one JSON line on stdout; the C++ allocator's
own report goes to stderr, where the parent reads "Arena allocation total N bytes".
"""

from __future__ import annotations

import json
import sys

import numpy as np


def main(job_path: str) -> int:
    from tflite_micro.python.tflite_micro import runtime

    with open(job_path, encoding="utf-8") as f:
        jobs = json.load(f)
    for job in jobs:
        with open(job["model"], "rb") as f:
            data = f.read()
        interp = runtime.Interpreter.from_bytes(data, arena_size=int(job["arena"]))
        sys.stdout.flush()
        print(f"@@begin {job['name']}", file=sys.stderr, flush=True)
        interp.print_allocations()
        sys.stderr.flush()
        outputs: list[np.ndarray] = []
        if job.get("inputs"):
            with np.load(job["inputs"]) as z:
                arrays = [z[f"in{i}"] for i in range(len(z.files))]
            for row in range(arrays[0].shape[0]):
                for i, a in enumerate(arrays):
                    interp.set_input(a[row : row + 1], i)
                interp.invoke()
                outputs.append(interp.get_output(0).copy())
            np.save(job["outputs"], np.concatenate(outputs, axis=0))
        print(json.dumps({"name": job["name"], "ok": True, "ran": len(outputs)}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
