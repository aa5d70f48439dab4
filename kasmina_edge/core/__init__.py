"""kasmina_edge.core: the torch-free building blocks every side shares, between ``contracts`` and the rest.

It imports only ``contracts`` (and numpy, scipy, pydantic, the LiteRT flatbuffer schema; onnx and
TFLite Micro lazily, where a host tool asks for them), so a device, the build and the profiler read
formats, profiles and rules the same way:

* ``formats``        artifact formats and kinds (one set for the build and the device)
* ``tensors``        an artifact's input/output tensor and the arithmetic on its int8 grid
* ``tflite_graph``   ops and tensors of a .tflite (flatbuffer), interpreters without delegates
* ``edgetpu_rules``  Coral's model requirements, CPU partition, parameter cache, the compiler when present
* ``tflm``           TFLite Micro arenas (in a child process, ``_tflm_worker``), memory limits, parity
* ``pack4``          4-bit weights two per byte (the device unpacks with it)
* ``build_errors``   the errors a build (and the checks above) raise, each naming artifact and limit
"""
