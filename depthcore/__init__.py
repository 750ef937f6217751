"""depthcore: do CLIP and Segment Anything help monocular depth estimation on NYU Depth v2?"""

__version__ = "0.1.0"
