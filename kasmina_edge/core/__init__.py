"""kasmina_edge.core: the torch-free building blocks every side shares, between ``contracts`` and the rest.

It imports only ``contracts`` (and numpy, scipy, pydantic, the LiteRT flatbuffer schema; onnx and
TFLite Micro lazily, where a host tool asks for them), so the device, the build, the host and the
profiler read formats, profiles and rules the same way. One concept per module:

* ``profiles``       hardware/network profiles and build targets as validated models
* ``catalog``        finding and loading them from ``profiles/`` and ``targets/`` (errors name file and line)
* ``toml_lines``     the line of each key of a TOML file (for those errors)
* ``airtime``        link airtime: the LoRa time-on-air formula, IP serialisation, payload limits
* ``formats``        artifact formats and kinds (one set for the build and the device)
* ``tensors``        an artifact's input/output tensor and the arithmetic on its int8 grid
* ``kernel_fit``     whether seed kernels fit a base (checkpoint, target, sites, site grids)
* ``tflite_graph``   ops and tensors of a .tflite (flatbuffer), interpreters without delegates
* ``edgetpu_rules``  Coral's model requirements, CPU partition, parameter cache, the compiler when present
* ``tflm``           TFLite Micro arenas (in a child process, ``_tflm_worker``), memory limits, parity
* ``pack4``          4-bit weights two per byte (the device unpacks with it)
* ``build_errors``   the errors a build (and the checks above) raise, each naming artifact and limit
* ``features``       Tamiyo's feature vector and signal features (the host trains on what the device computes)
* ``symptoms``       Tamiyo's symptom rule: which condition, how severe, which site treats it best
"""
