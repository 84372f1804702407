"""The 11 CoOp image datasets in CoOp's layout (CoOp's DATASETS.md), and a torch Dataset over their images. Where
each lives and how its split is stored is its record's `ImageLayout` (`calip3d.records.coop`).

Layout and parsing follow CoOp's dataset classes (KaiyangZhou/CoOp `datasets/*.py`):

- Split JSON `split_zhou_<Name>.json` = `{"train"|"val"|"test": [[relpath, label, classname], ...]}`, relpath
  relative to the dataset's image folder (for StanfordCars the dataset folder itself). Class names are the
  json's, ordered by label (Dassl's `get_lab2cname`), used as written: CoOp wrote its renamed names into the
  json when it made the split (EuroSAT "Annual Crop Land", Caltech101 "face", UCF101 "Apply_Eye_Makeup";
  prompts later replace `_` with a space). EuroSAT's raw folder names ("AnnualCrop") are mapped to CoOp's
  names in case a json carries them; on CoOp's own json that mapping changes nothing.
- ImageNet: `imagenet/classnames.txt` lines `n01440764 tench` (CoOp's file); labels follow the sorted wnids,
  as in CoOp's `ImageNet.read_data`. CoOp uses ImageNet's val set as its test set and has no separate val
  split: here `test` and `val` both read `images/val/`; the caller decides whether tuning on it is acceptable.
- FGVCAircraft: no json; `images_variant_{train,val,test}.txt` lines `<imageid> <variant name>`, image
  `images/<imageid>.jpg`, class order = the lines of `variants.txt`.
"""

from __future__ import annotations

import io
import json
import os
import sys
from dataclasses import dataclass, fields, replace
from typing import Any, Callable, Iterator, Mapping, Sequence

import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset, default_collate

from calip3d.cache import fingerprint_fields
from calip3d.encoding import Batch, Loading
from calip3d.errors import CalipError
from calip3d.records import COOP_DATASETS_MD  # noqa: F401  (re-exported)
from calip3d.records import DatasetRecord, ImageLayout, dataset_record, view

from .registry import IMAGES, get_dataset

COOP_SPLITS = ("train", "val", "test")


@dataclass(frozen=True)
class ImageDatasetSpec(ImageLayout):
    """One CoOp dataset as the readers see it: its record's `ImageLayout`, --dataset `name` (aliases: see
    calip3d.datasets.registry) and CoOp's dataset class name (`coop_name`, the record's title)."""

    name: str = ""
    coop_name: str = ""

    @classmethod
    def of(cls, record: DatasetRecord) -> "ImageDatasetSpec":
        """The spec of an image dataset's record (a `CalipError` naming it when the record has no image layout)."""
        layout = record.require("image")
        return cls(**{f.name: getattr(layout, f.name) for f in fields(ImageLayout)}, name=record.name,
                   coop_name=record.title)


@dataclass(frozen=True)
class ImageAugment:
    """The random augmentation of train images (Tip-Adapter's `train_tranform`, CoOp's few-shot one): a random
    resized crop covering `scale` of the image (aspect ratios 3/4 .. 4/3, bicubic), a horizontal flip with
    probability `flip`, then the model's own normalisation."""

    scale: tuple[float, float] = (0.5, 1.0)
    flip: float = 0.5
    interpolation: str = "bicubic"


@dataclass
class ImageSplit:
    """One split: `items` are (absolute image path, label); `classnames[label]` names the class; `source` is the
    json/txt file the split came from. `augment_seed` set: images are loaded through `augmentation` drawn with that
    seed (see `augmented`)."""

    name: str
    split: str
    classnames: list[str]
    items: list[tuple[str, int]]
    source: str
    augment_seed: int | None = None
    augmentation: ImageAugment | None = None

    def __len__(self) -> int:
        return len(self.items)

    @property
    def labels(self) -> np.ndarray:
        """`[N]` int64."""
        return np.asarray([label for _, label in self.items], dtype=np.int64)

    @property
    def ids(self) -> list[str]:
        """The items' identities (their paths), for few-shot split files."""
        return [path for path, _ in self.items]

    def subset(self, indices: Sequence[int]) -> "ImageSplit":
        """The items at `indices`, in that order."""
        return replace(self, items=[self.items[int(i)] for i in indices])

    def augmented(self, seed: int, augmentation: ImageAugment = ImageAugment()) -> "ImageSplit":
        """The same items, loaded through `augmentation` drawn with `seed`."""
        return replace(self, augment_seed=int(seed), augmentation=augmentation)

    def fingerprint(self) -> dict[str, Any]:
        """Every field (for cache keys): the items' digest (paths and labels), the source, the augmentation and its
        seed."""
        return fingerprint_fields(self)

    def batches(self, loading: Loading) -> Iterator[Batch]:
        """`(images [B, 3, S, S], labels [B], indices [B])`, read by `loading.workers` processes (decoded on
        `loading.device` with `loading.decode_on_device`, except for random augmentations, which are PIL's)."""
        if self.augment_seed is not None:
            transform = augmented_image_transform(loading.transform, loading.image_size,
                                                  self.augmentation or ImageAugment())
            return image_batches(self.items, transform, loading, self.augment_seed)
        if loading.decode_on_device:
            return device_image_batches(self.items, loading)
        return image_batches(self.items, loading.transform, loading)


# Every image dataset whose record has an image layout, by name (a view of the records).
IMAGE_DATASETS: Mapping[str, ImageDatasetSpec] = view(
    lambda records: {r.name: ImageDatasetSpec.of(r) for r in records if r.kind == IMAGES and r.image is not None})


def resolve_image_dataset(name: str) -> str:
    """The registry name of an image dataset given by name or alias (`Caltech-101`, `flowers102`)."""
    return get_dataset(name, IMAGES).name


def _layout_error(spec: ImageDatasetSpec, root: str, problem: str) -> CalipError:
    tree = "\n".join("    " + line for line in spec.layout.splitlines())
    return CalipError(
        f"{spec.name}: {problem}\n"
        f"expected layout under the data root {root}:\n{tree}\n"
        f"where to get it: {spec.source}\n"
        f"(`calip3d fetch {spec.name}` downloads it where its terms allow; sources: data/README.md)"
    )


def _need_file(spec: ImageDatasetSpec, root: str, path: str, what: str) -> None:
    if not os.path.isfile(path):
        raise _layout_error(spec, root, f"{what} not found: {path}")


def _need_dir(spec: ImageDatasetSpec, root: str, path: str, what: str) -> None:
    if not os.path.isdir(path):
        raise _layout_error(spec, root, f"{what} not found: {path}")


def _classnames_from_labels(pairs: Sequence[tuple[int, str]], source: str) -> list[str]:
    """Class names by label from (label, classname) pairs; labels must cover 0..K-1, one name each."""
    names: dict[int, str] = {}
    for label, cname in pairs:
        previous = names.setdefault(label, cname)
        if previous != cname:
            raise CalipError(f"{source}: label {label} is named both '{previous}' and '{cname}'")
    missing = sorted(set(range(max(names) + 1)) - set(names)) if names else []
    if missing:
        raise CalipError(f"{source}: labels must run 0..{max(names)} without gaps; missing {missing[:10]}")
    return [names[label] for label in range(len(names))]


def _parse_entry(entry: Any, source: str, split: str, index: int) -> tuple[str, int, str]:
    ok = isinstance(entry, list) and len(entry) == 3
    ok = ok and isinstance(entry[0], str) and isinstance(entry[2], str)
    if ok:
        try:
            label = int(entry[1])
        except (TypeError, ValueError):
            ok = False
    if not ok or label < 0:
        raise CalipError(f"{source}: {split}[{index}] = {entry!r}; "
                         "expected [relative path, label >= 0, classname]")
    return entry[0], label, entry[2]


_Read = tuple[list[str], list[tuple[str, int]], str]  # classnames, items, split file


def _read_coop_json(spec: ImageDatasetSpec, root: str, folder: str, split: str) -> _Read:
    split_path = os.path.join(folder, spec.split_file)
    image_dir = os.path.join(folder, spec.image_dir)
    _need_file(spec, root, split_path, "split file")
    _need_dir(spec, root, image_dir, "image folder")
    try:
        with open(split_path, encoding="utf-8") as fh:
            data = json.load(fh)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise CalipError(f"cannot read split file {split_path}: {err}") from err
    if not isinstance(data, dict) or not all(isinstance(data.get(s), list) for s in COOP_SPLITS):
        raise CalipError(f"{split_path}: expected a JSON object with lists 'train', 'val' and 'test' "
                         "(CoOp format)")
    parsed = {s: [_parse_entry(e, split_path, s, i) for i, e in enumerate(data[s])] for s in COOP_SPLITS}
    pairs = [(label, spec.classname_map.get(cname, cname)) for s in COOP_SPLITS for _, label, cname in parsed[s]]
    classnames = _classnames_from_labels(pairs, split_path)
    items = [(os.path.join(image_dir, rel), label) for rel, label, _ in parsed[split]]
    return classnames, items, split_path


def _list_images(folder: str) -> list[str]:
    return sorted(e.name for e in os.scandir(folder) if e.is_file() and not e.name.startswith("."))


def _read_imagenet(spec: ImageDatasetSpec, root: str, folder: str, split: str) -> _Read:
    names_path = os.path.join(folder, spec.split_file)
    _need_file(spec, root, names_path, "class-name file")
    wnid_to_name: dict[str, str] = {}
    with open(names_path, encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, 1):
            parts = line.strip().split(" ", 1)
            if parts == [""]:
                continue
            if len(parts) != 2 or not parts[1].strip() or parts[0] in wnid_to_name:
                raise CalipError(f"{names_path}:{lineno}: expected a new '<wnid> <class name>' line, "
                                 f"got {line!r}")
            wnid_to_name[parts[0]] = parts[1].strip()
    wnids = sorted(wnid_to_name)
    split_dir = os.path.join(folder, spec.image_dir, "train" if split == "train" else "val")
    _need_dir(spec, root, split_dir, f"{split} image folder")
    folders = sorted(e.name for e in os.scandir(split_dir) if e.is_dir() and not e.name.startswith("."))
    if not folders:
        raise _layout_error(spec, root, f"{split_dir} has no wnid folders (the ILSVRC-2012 val archive "
                                        "is flat: sort its images into images/val/<wnid>/, e.g. with "
                                        "valprep.sh)")
    unknown = [f for f in folders if f not in wnid_to_name]
    if unknown:
        raise CalipError(f"{split_dir}: folders {unknown[:5]} are not wnids listed in {names_path}")
    label_of = {wnid: label for label, wnid in enumerate(wnids)}
    items = [
        (os.path.join(split_dir, wnid, name), label_of[wnid])
        for wnid in folders
        for name in _list_images(os.path.join(split_dir, wnid))
    ]
    return [wnid_to_name[w] for w in wnids], items, names_path


def _read_fgvc(spec: ImageDatasetSpec, root: str, folder: str, split: str) -> _Read:
    variants_path = os.path.join(folder, "variants.txt")
    split_path = os.path.join(folder, spec.split_file.format(split=split))
    image_dir = os.path.join(folder, spec.image_dir)
    _need_file(spec, root, variants_path, "class list")
    _need_file(spec, root, split_path, "split file")
    _need_dir(spec, root, image_dir, "image folder")
    with open(variants_path, encoding="utf-8") as fh:
        classnames = [line.strip() for line in fh if line.strip()]
    label_of = {name: label for label, name in enumerate(classnames)}
    items = []
    with open(split_path, encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, 1):
            parts = line.strip().split(" ", 1)
            if parts == [""]:
                continue
            if len(parts) != 2 or parts[1] not in label_of:
                raise CalipError(f"{split_path}:{lineno}: expected '<imageid> <variant from variants.txt>', "
                                 f"got {line.strip()!r}")
            items.append((os.path.join(image_dir, parts[0] + ".jpg"), label_of[parts[1]]))
    return classnames, items, split_path


_READERS = {"coop-json": _read_coop_json, "imagenet": _read_imagenet, "fgvc": _read_fgvc}


def load_image_split(name: str, data_root: str | os.PathLike, split: str = "test") -> ImageSplit:
    """Read one split (`train`, `val` or `test`) of a CoOp dataset under `data_root`.

    ImageNet's `test` and `val` are both `images/val/` (CoOp's convention). Raises `CalipError` with the
    expected layout and the data source when a folder or split file is missing, or when the split's first
    image is absent.
    """
    spec = ImageDatasetSpec.of(dataset_record(resolve_image_dataset(name)))
    if split not in COOP_SPLITS:
        raise CalipError(f"unknown split '{split}' for {spec.name}; expected one of: {', '.join(COOP_SPLITS)}")
    root = os.path.abspath(os.path.expanduser(os.fspath(data_root)))
    folder = os.path.join(root, spec.folder)
    _need_dir(spec, root, folder, "dataset folder")
    classnames, items, split_file = _READERS[spec.fmt](spec, root, folder, split)
    if not items:
        raise CalipError(f"{spec.name}: the {split} split in {split_file} lists no images")
    _need_file(spec, root, items[0][0], f"first {split} image listed by {split_file}")
    return ImageSplit(name=spec.name, split=split, classnames=classnames, items=items, source=split_file)


class ImageFileDataset(Dataset):
    """Images from `items` [(path, label)], converted to RGB: item i -> (transform(image), label, i).

    An unreadable file raises `CalipError` naming it; with `skip_bad_files=True` the item is None instead
    (batch with `collate_skip_bad`, which drops it).
    """

    def __init__(self, items: Sequence[tuple[str, int]], transform: Callable[[Image.Image], Any],
                 skip_bad_files: bool = False) -> None:
        self.items = items
        self.transform = transform
        self.skip_bad_files = skip_bad_files

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> tuple[Any, int, int] | None:
        path, label = self.items[index]
        try:
            with Image.open(path) as img:
                rgb = img.convert("RGB")
        except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as err:
            if self.skip_bad_files:
                return _skipped(path, err)
            raise CalipError(f"cannot read image {path}: {err}") from err
        return self.transform(rgb), label, index


def _skipped(path: str, err: BaseException) -> None:
    """Name a skipped unreadable image on stderr (`--skip-bad-files`); the run counts them in its result."""
    print(f"warning: skipping unreadable image {path}: {err}", file=sys.stderr)
    return None


def collate_skip_bad(
    batch: Sequence[tuple[Any, int, int] | None],
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Collate `ImageFileDataset` items, dropping None (unreadable files): images [B, ...], labels [B],
    indices [B], where B counts the readable items; the skipped ones are the indices missing from `indices`.
    """
    kept = [item for item in batch if item is not None]
    if not kept:
        empty = torch.empty(0, dtype=torch.long)
        return torch.empty(0), empty, empty.clone()
    images, labels, indices = default_collate(kept)
    return images, labels, indices


def image_batches(items: Sequence[tuple[str, int]], transform: Callable, loading: Loading,
                  seed: int | None = None) -> Iterator[Batch]:
    """The one image DataLoader: `(images [B, 3, S, S], labels [B], indices [B])` in item order, batched as
    `loading.batch_rows`, read by `loading.workers` processes (into pinned memory with `loading.pin_memory`), unreadable
    files dropped with `loading.skip_bad_files`. With `seed`, random transforms are reproducible (the global torch seed
    for in-process loading, the loader's generator for worker processes)."""
    generator = None
    if seed is not None:
        torch.manual_seed(seed)
        generator = torch.Generator().manual_seed(seed)
    loader = DataLoader(ImageFileDataset(list(items), transform, skip_bad_files=loading.skip_bad_files),
                        batch_sampler=loading.batch_rows(len(items)), num_workers=loading.workers,
                        collate_fn=collate_skip_bad, generator=generator, pin_memory=loading.pin_memory)
    return iter(loader)


class ImageBytesDataset(Dataset):
    """The files of `items` [(path, label)] as bytes: item i -> (uint8 `[L]`, label, i); an unreadable file raises
    `CalipError` naming it, or gives None with `skip_bad_files`."""

    def __init__(self, items: Sequence[tuple[str, int]], skip_bad_files: bool = False) -> None:
        self.items = items
        self.skip_bad_files = skip_bad_files

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int, int] | None:
        path, label = self.items[index]
        try:
            with open(path, "rb") as handle:
                data = handle.read()
        except OSError as err:
            if self.skip_bad_files:
                return _skipped(path, err)
            raise CalipError(f"cannot read image {path}: {err}") from err
        return torch.frombuffer(bytearray(data), dtype=torch.uint8), label, index


def collate_bytes(batch: Sequence[tuple[torch.Tensor, int, int] | None]) -> tuple[list[torch.Tensor], torch.Tensor,
                                                                                  torch.Tensor]:
    """File bytes as a list (their lengths differ), labels `[B]` and indices `[B]`, unreadable files dropped."""
    kept = [item for item in batch if item is not None]
    return ([data for data, _, _ in kept], torch.tensor([label for _, label, _ in kept], dtype=torch.long),
            torch.tensor([index for _, _, index in kept], dtype=torch.long))


@dataclass(frozen=True)
class TensorTransform:
    """A model's validation transform (resize the shortest side, centre crop, to [0, 1], normalise) applied to uint8
    image tensors `[3, H, W]` on a device: the same steps as on PIL images, with torchvision's antialiased tensor
    resize (within 2/255 of PIL's per pixel, see tests/test_decode.py). `mean` and `std` `[3, 1, 1]` live on the
    device."""

    resize: Any
    interpolation: Any
    max_size: int | None
    crop: Any
    mean: torch.Tensor
    std: torch.Tensor

    @classmethod
    def of(cls, transform: Any, device: torch.device) -> "TensorTransform":
        """The steps of a torchvision `Compose` of Resize, CenterCrop, RGB conversion, ToTensor and Normalize (open_clip's
        validation transform), for images on `device`; any other step is a `CalipError`."""
        from torchvision import transforms as T

        found: dict[str, Any] = {}
        for step in getattr(transform, "transforms", [transform]):
            if isinstance(step, T.Resize):
                found["resize"] = step
            elif isinstance(step, T.CenterCrop):
                found["crop"] = step.size
            elif isinstance(step, T.Normalize):
                found["mean"], found["std"] = step.mean, step.std
            elif not (isinstance(step, T.ToTensor) or "convert" in type(step).__name__.lower()
                      or "convert" in getattr(step, "__name__", "")):
                raise CalipError(f"EncodeConfig.decode_on_device reproduces Resize, CenterCrop, ToTensor and Normalize; "
                                 f"this model's transform also has {step!r}: decode on the CPU (turn "
                                 "EncodeConfig.decode_on_device off)")
        if {"resize", "crop", "mean"} - set(found):
            raise CalipError(f"EncodeConfig.decode_on_device needs a transform with Resize, CenterCrop and Normalize, "
                             f"got {transform!r}")
        resize = found["resize"]
        mean, std = (torch.tensor(found[k], dtype=torch.float32).view(-1, 1, 1).to(device) for k in ("mean", "std"))
        return cls(resize.size, resize.interpolation, resize.max_size, found["crop"], mean, std)

    def __call__(self, images: Sequence[torch.Tensor]) -> torch.Tensor:
        """uint8 images `[3, H_i, W_i]` -> float32 `[B, 3, S, S]`, on their device."""
        from torchvision.transforms.v2 import functional as TF

        crops = [TF.center_crop(TF.resize(image, self.resize, interpolation=self.interpolation, max_size=self.max_size,
                                          antialias=True), self.crop) for image in images]
        return torch.stack(crops).float().div_(255).sub_(self.mean).div_(self.std)


def decode_images(datas: Sequence[torch.Tensor], paths: Sequence[str], device: torch.device,
                  skip_bad_files: bool) -> tuple[list[torch.Tensor], list[int]]:
    """Encoded image files (uint8 `[L]`) -> (RGB uint8 `[3, H, W]` on `device`, the positions decoded). JPEGs are
    decoded in one call on `device` (nvJPEG on a GPU); if that fails, file by file, other formats through PIL. An
    undecodable file raises `CalipError`, or is left out with `skip_bad_files`."""
    from torchvision.io import ImageReadMode, decode_jpeg
    from torchvision.transforms.v2.functional import pil_to_tensor

    try:
        return list(decode_jpeg(list(datas), mode=ImageReadMode.RGB, device=device)), list(range(len(datas)))
    except RuntimeError:
        pass
    images, kept = [], []
    for position, (data, path) in enumerate(zip(datas, paths)):
        try:
            image = decode_jpeg(data, mode=ImageReadMode.RGB, device=device)
        except RuntimeError:
            try:
                with Image.open(io.BytesIO(data.numpy().tobytes())) as img:
                    image = pil_to_tensor(img.convert("RGB")).to(device)
            except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as err:
                if skip_bad_files:
                    _skipped(path, err)
                    continue
                raise CalipError(f"cannot read image {path}: {err}") from err
        images.append(image)
        kept.append(position)
    return images, kept


def device_image_batches(items: Sequence[tuple[str, int]], loading: Loading) -> Iterator[Batch]:
    """`image_batches` with decoding and transforms on `loading.device`: the workers read the files' bytes, then each
    batch is decoded there (`decode_images`) and resized, cropped and normalised as `loading.transform` does
    (`TensorTransform`)."""
    transform = TensorTransform.of(loading.transform, loading.device)
    loader = DataLoader(ImageBytesDataset(list(items), skip_bad_files=loading.skip_bad_files),
                        batch_sampler=loading.batch_rows(len(items)), num_workers=loading.workers,
                        collate_fn=collate_bytes)
    for datas, labels, indices in loader:
        images, kept = decode_images(datas, [items[int(i)][0] for i in indices], loading.device,
                                     loading.skip_bad_files)
        if not kept:
            empty = torch.empty(0, dtype=torch.long)
            yield torch.empty(0), empty, empty.clone()
            continue
        yield transform(images), labels[kept], indices[kept]


def augmented_image_transform(val_transform: Any, size: int, augmentation: ImageAugment = ImageAugment()) -> Callable:
    """`augmentation` at `size` pixels, then the model's own normalisation (taken from `val_transform`)."""
    from torchvision import transforms as T

    normalize = next(t for t in val_transform.transforms if isinstance(t, T.Normalize))
    return T.Compose([
        T.RandomResizedCrop(size, scale=augmentation.scale, interpolation=T.InterpolationMode(augmentation.interpolation)),
        T.RandomHorizontalFlip(augmentation.flip), T.Lambda(lambda im: im.convert("RGB")), T.ToTensor(), normalize,
    ])
