"""Geometry shared by every stage: the image frame and its crops (:mod:`~depthcore.geometry.frame`), camera
motions and mirrored views (:mod:`~depthcore.geometry.camera`), and view synthesis by inverse warping
(:mod:`~depthcore.geometry.warp`). Pure functions of arrays and tensors: no files, no params."""
