"""Datasets: CoOp image datasets and point-cloud datasets."""
