"""The paper's tables as one cached grid of runs: the rows (:mod:`~depthcore.paper.rows`), the generated
``paper/dvc.yaml`` (:mod:`~depthcore.paper.grid`) and the report (:mod:`~depthcore.paper.report`)."""
