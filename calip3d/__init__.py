"""calip3d: zero-shot and few-shot CLIP classification of point clouds and images, with CALIP attention."""

__version__ = "0.1.0"
