"""The build's stages, in the order :func:`kasmina_edge.compile.pipeline.build` runs them.

Each is a module with a typed input and output (the build report, :class:`~kasmina_edge.compile.report.
BuildReport`, travels along and each stage adds its figures and notes to it):

===================  ==========================================  ==================================================
stage                input                                       output
===================  ==========================================  ==================================================
``plan``             BuildRequest                                BuildPlan: checked and described, nothing converted
``lower``            BuildRequest                                Lowered: export-ready torch modules cut at the sites
``windows``          BuildRequest                                BuildWindows: calibration and evaluation windows
``calibrate``        BuildRequest, Lowered, BuildWindows         Calibration: site and logit grids, artifact specs
``export``           ArtifactSpec (one per artifact)             BuiltArtifact, gathered in an ArtifactSet
``cuts``             ArtifactSpecs, BuiltArtifacts               cuts checked (raises on a grid mismatch)
``chains``           ArtifactSpecs, SegmentedModel               ChainPlan: the base and morphed layouts
``ptq_tolerance``    ToleranceJob                                ArtifactSet with lossy PTQ kernels redone in QAT
``accuracy``         ArtifactSet's chain, ChainPlan, windows     ParityMiss list (and the accuracy rows)
``target_checks``    ArtifactSet, target, profile                extra bundle files (Edge TPU, firmware sources)
``package``          PackageInput                                BundleContents: files and manifest
``sign``             BundleContents, signing key                 the signed bundle's path
===================  ==========================================  ==================================================

``request`` holds what a build is asked for (:class:`BuildRequest`); ``progress`` the progress display.
"""
