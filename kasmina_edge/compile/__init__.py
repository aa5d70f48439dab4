"""kasmina_edge.compile: the ahead-of-time build, per target.

``pipeline.plan`` / ``pipeline.build`` drive it; the pieces, one concept each:

* ``quantize``   int8 grids, BatchNorm folding, PT2E int8 with cut grids forced, Brevitas QAT (8/4-bit)
* ``split``      the model cut at its seed sites: segments, kernels, one grid per site, cut checks
* ``rewrite``    export-friendly equivalents of host modules (RR standardisation folded into fc1)
* ``export_tflite`` / ``export_onnx``   litert-torch full-int8 TFLite; ONNX QDQ (ORT) and QCDQ (Brevitas)
* ``chain``      running a split model as the device does (torch, LiteRT, onnxruntime)
* ``parity``     bounds against torch, reference vectors
* ``tflite_graph``  ops and tensors of a .tflite (flatbuffer), interpreters without delegates
* ``edgetpu_rules`` Coral's model requirements, CPU partition, parameter cache, the compiler when present
* ``tflm``       TFLite Micro arenas (in a child process), memory limits, parity with reference kernels
* ``pack4``      4-bit weights two per byte (numpy only: the device unpacks with it)
* ``c_array``    model_data.cc/.h for firmware
* ``report``     the build report
"""
