"""kasmina_edge.compile: the ahead-of-time build, per target.

The torch-free format code it uses (TFLite graphs, Edge TPU rules, TFLite Micro, 4-bit packing, build
errors) is in :mod:`kasmina_edge.core`, shared with the device and the profiler.

``pipeline.plan`` / ``pipeline.build`` drive it through ``stages`` (plan → lower → windows → calibrate →
export → cuts → chains → PTQ tolerance → accuracy → target checks → package → sign; one module each, see
:mod:`kasmina_edge.compile.stages`); the pieces they use, one concept each:

* ``quantize``   int8 grids, BatchNorm folding, PT2E int8 with cut grids forced, Brevitas QAT (8/4-bit)
* ``split``      the model cut at its seed sites: segments, kernels, one grid per site, cut checks
* ``rewrite``    export-friendly equivalents of host modules (RR standardisation folded into fc1)
* ``export_tflite`` / ``export_onnx``   litert-torch full-int8 TFLite; ONNX QDQ (ORT) and QCDQ (Brevitas)
* ``chain``      running a split model as the device does (torch, LiteRT, onnxruntime)
* ``parity``     bounds against torch, reference vectors
* ``c_array``    model_data.cc/.h for firmware
* ``report``     the build report
"""
