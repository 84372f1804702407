"""Few-shot classification on cached frozen CLIP features: CALIP-FS training, baselines and checkpoints."""
