"""Datasets that fetch themselves: a registry of sources and checksums, resumable downloads with mirror fallback,
integrity checks, safe extraction, and the status of each dataset under the data root.

Modules, one job each: `sources` (the registry: a view of the dataset records, `calip3d.records`), `readme`
(data/README.md's table of sources), `env` (data root, mirrors, offline), `transfer` (one URL, Range
resume), `download` (one file: mirrors, URLs, Drive, alternatives), `verify` (checksums, sizes), `manifest`
(recorded sha256s, installed datasets), `archives` (safe extraction), `install` (one file into place), `catalog`
(names and layout checks), `fetch` (a whole dataset), `status` (status, listing, provenance).
"""

from .catalog import LayoutCheck, dataset_names, default_layout_check, resolve_dataset
from .env import DATA_ENV, MIRROR_ENV, OFFLINE_ENV, data_root, default_data_root, mirrors_from_env, offline
from .dataset_fetch import FetchReport, ensure_dataset, fetch_dataset
from .manifest import FileRecord
from .sources import RELEASES, Dataset, RemoteFile
from .status import STATUSES, DatasetListing, dataset_provenance, dataset_status, format_listing, list_datasets

__all__ = [
    "RELEASES", "DATA_ENV", "MIRROR_ENV", "OFFLINE_ENV", "STATUSES", "Dataset", "DatasetListing", "FetchReport",
    "FileRecord", "LayoutCheck", "RemoteFile", "data_root", "dataset_names", "dataset_provenance", "dataset_status",
    "default_data_root", "default_layout_check", "ensure_dataset", "fetch_dataset", "format_listing",
    "list_datasets", "mirrors_from_env", "offline", "resolve_dataset",
]
