"""Running the library as a DVC pipeline: the stage specs and the generated ``dvc.yaml``
(:mod:`~depthcore.pipeline.spec`), code dependencies (:mod:`~depthcore.pipeline.deps`), the running stage's DVC
input hashes (:mod:`~depthcore.pipeline.dvc`), and the pipeline up to training without DVC
(:mod:`~depthcore.pipeline.build`)."""
