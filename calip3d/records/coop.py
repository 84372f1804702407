"""The records of CoOp's 11 image datasets (CoOp's DATASETS.md and `datasets/*.py`, split sizes as DATASETS.md
lists them; sources and checksums from `data_sources.md`, November 2026; betas from the CALIP paper via SuS-X;
Tip-Adapter's configs).

Adding a CoOp-format dataset is one more `coop_json(...)` record here: its names, prompt, folder and tree, the files
to fetch (its split json is added), published sizes, betas and Tip-Adapter config; every view of the records picks it
up.

A checksum is listed only where a trustworthy source publishes it (TFDS checksum files, torchvision's md5, Hugging
Face LFS pointers); everything else is checked by its exact published byte count and by the sha256 recorded in the
manifest on first download. Templates are CoOp's CUSTOM_TEMPLATES (trainers/zsclip.py). Tip-Adapter configs:
imagenet, oxford_pets, dtd, eurosat, fgvc_aircraft are the upstream files (gaopengcuhk/Tip-Adapter configs/*.yaml,
commit 4e29134); the other six as found in unmodified forks of it (OE-Heart/Tip-Adapter bf8fb37, each cross-checked
against HiromasaYamsnishi/tip_adapter or quas-modo/Tip-Adapter)."""

from __future__ import annotations

from typing import Mapping

from .files import Release, RemoteFile, copy_to, unpack
from .record import IMAGES, DatasetRecord, ImageLayout, SplitSizes, TipAdapterRelease

COOP_DATASETS_MD = "https://github.com/KaiyangZhou/CoOp/blob/main/DATASETS.md"
_VGG = "https://www.robots.ox.ac.uk/~vgg/data"

# CoOp's EuroSAT NEW_CNAMES (datasets/eurosat.py), applied by CoOp when it wrote split_zhou_EuroSAT.json.
EUROSAT_CLASSNAMES = {
    "AnnualCrop": "Annual Crop Land",
    "Forest": "Forest",
    "HerbaceousVegetation": "Herbaceous Vegetation Land",
    "Highway": "Highway or Road",
    "Industrial": "Industrial Buildings",
    "Pasture": "Pasture Land",
    "PermanentCrop": "Permanent Crop Land",
    "Residential": "Residential Buildings",
    "River": "River",
    "SeaLake": "Sea or Lake",
}


def _tip(scale: tuple[float, float], alpha: float, epochs: int = 20) -> TipAdapterRelease:
    """A Tip-Adapter config: search grid bounds (beta, alpha), steps (200, 20), init beta 1, init `alpha`, `epochs`
    training epochs, 10 augmented passes."""
    return TipAdapterRelease(scale, (200, 20), 1, alpha, epochs, 10)


def coop_json(*, name: str, title: str, template: str, aliases: tuple[str, ...] = (), folder: str, image_dir: str,
              tree: str, images_from: str, release_title: str, origin: str, sizes: SplitSizes,
              files: tuple[RemoteFile, ...], split_drive_id: str, betas: tuple[float, float] | None = None,
              tip_adapter: TipAdapterRelease | None = None, access: str = "download", instructions: str = "",
              classname_map: Mapping[str, str] | None = None) -> DatasetRecord:
    """The record of a dataset in CoOp's json format: `folder/` holding `image_dir/` (the tree below it: `tree`) and
    CoOp's `split_zhou_<title>.json` (fetched from Google Drive `split_drive_id`, after `files`); it has a val split.
    `images_from` says where the images come from (in errors), `origin` the same as data/README.md's table of 2D
    datasets shows it (`Release.origin`); `release_title` names the release in `calip3d fetch`; `sizes` are CoOp's
    published class and split counts."""
    split_file = f"split_zhou_{title}.json"
    lines = [f"{folder}/"] + [f"|-- {line}" for line in tree.splitlines()] + [f"`-- {split_file}"]
    source = f"{images_from}; {split_file}: CoOp's split, linked from CoOp's DATASETS.md ({COOP_DATASETS_MD})"
    split = RemoteFile(split_file, copy_to(f"{folder}/{split_file}"), gdrive_id=split_drive_id)
    release = Release(key=name, title=release_title, folder=folder, files=(*files, split), loaders=(name,),
                      access=access, instructions=instructions, origin=origin)
    return DatasetRecord(name=name, kind=IMAGES, title=title, template=template, aliases=aliases,
                         image=ImageLayout(folder, image_dir, split_file, "coop-json", "\n".join(lines), source,
                                           dict(classname_map or {})),
                         releases=(release,), sizes=(sizes,), val_split=True, betas=betas, tip_adapter=tip_adapter)


IMAGENET = DatasetRecord(
    name="imagenet", kind=IMAGES, title="ImageNet", template="a photo of a {}.",
    aliases=("imagenet1k", "in1k", "ilsvrc2012"),
    image=ImageLayout(
        folder="imagenet", image_dir="images", split_file="classnames.txt", fmt="imagenet",
        layout="imagenet/\n"
               "|-- classnames.txt          lines 'n01440764 tench' (CoOp's file)\n"
               "`-- images/\n"
               "    |-- train/n01440764/*.JPEG   (1,000 wnid folders)\n"
               "    `-- val/n01440764/*.JPEG     (val images sorted into the same wnid folders)",
        source="ILSVRC-2012 train and val from https://image-net.org (sort val into wnid folders, e.g. "
               f"with the common valprep.sh); classnames.txt from CoOp's DATASETS.md ({COOP_DATASETS_MD})"),
    releases=(Release(
        key="imagenet", title="ImageNet (ILSVRC-2012)", folder="imagenet", loaders=("imagenet",), access="manual",
        files=(
            RemoteFile("ILSVRC2012_img_val.tar", None, size=6_744_924_160,
                       checksum="sha256:c7e06a6c0baccf06d8dbeb6577d71efff84673a5dbdd50633ab44f8ea0456ae0"),
            RemoteFile("classnames.txt", None, gdrive_id="1-61f_ol79pViBFDG_IDlUQSwoLcn2XXF"),
        ),
        instructions=(
            "ImageNet's licence requires registration: download ILSVRC2012_img_train.tar and "
            "ILSVRC2012_img_val.tar from https://image-net.org after signing in, extract them into "
            "{root}/imagenet/images/train/<wnid>/ and {root}/imagenet/images/val/<wnid>/ (sort the flat val "
            "images into wnid folders, e.g. with the common valprep.sh), and put CoOp's classnames.txt "
            f"(Google Drive id 1-61f_ol79pViBFDG_IDlUQSwoLcn2XXF, linked from {COOP_DATASETS_MD}) at "
            "{root}/imagenet/classnames.txt."),
        origin="ILSVRC-2012, https://image-net.org"),),
    sizes=(SplitSizes(1000, 1_281_167, None, 50_000),),
    val_split=False,  # CoOp's val is ImageNet's test split (images/val/)
    betas=(1.12, 0.02), tip_adapter=_tip((7, 3), 1.17),
)

CALTECH101 = coop_json(
    name="caltech101", title="Caltech101", template="a photo of a {}.", aliases=("caltech",),
    folder="caltech-101", image_dir="101_ObjectCategories", tree="101_ObjectCategories/<class>/image_NNNN.jpg",
    images_from="101_ObjectCategories.tar.gz (Caltech101, https://data.caltech.edu/records/mzrjq-6wc02)",
    release_title="Caltech101",
    origin="`101_ObjectCategories.tar.gz`, https://data.caltech.edu/records/mzrjq-6wc02",
    sizes=SplitSizes(100, 4_128, 1_649, 2_465),
    files=(RemoteFile(
        "caltech-101.zip",
        unpack("101_ObjectCategories", "caltech-101/101_ObjectCategories",
               nested=("caltech-101/101_ObjectCategories.tar.gz",)),
        urls=("https://data.caltech.edu/records/mzrjq-6wc02/files/caltech-101.zip?download=1",),
        size=137_414_764, checksum="sha256:331234750fc7f77520e50d9565e8b6907b03565e30320da1401130db08c61f91",
        alternative=RemoteFile(
            "101_ObjectCategories.tar.gz", unpack("101_ObjectCategories", "caltech-101/101_ObjectCategories"),
            gdrive_id="137RyRjvTBkBiIfeYBNZBtViDHQ6_Ewsp", size=131_740_031,
            checksum="sha256:af6ece2f339791ca20f855943d8b55dd60892c0a25105fcd631ee3d6430f9926")),),
    split_drive_id="1hyarUivQE36mY6jSomru6Fjd-JzwcCzN",
    betas=(5.0, 0.18), tip_adapter=_tip((12, 5), 3),
)

OXFORD_PETS = coop_json(
    name="oxford_pets", title="OxfordPets", template="a photo of a {}, a type of pet.",
    aliases=("pets", "oxford_iiit_pet"),
    folder="oxford_pets", image_dir="images", tree="images/<Breed>_NNN.jpg\nannotations/              (not read by calip3d)",
    images_from="images.tar.gz and annotations.tar.gz (Oxford-IIIT Pet, https://www.robots.ox.ac.uk/~vgg/data/pets/)",
    release_title="Oxford-IIIT Pets",
    origin="`images.tar.gz`, `annotations.tar.gz`, https://www.robots.ox.ac.uk/~vgg/data/pets/",
    sizes=SplitSizes(37, 2_944, 736, 3_669),
    files=(
        RemoteFile("images.tar.gz", unpack("images", "oxford_pets/images"),
                   urls=("https://thor.robots.ox.ac.uk/~vgg/data/pets/images.tar.gz", f"{_VGG}/pets/data/images.tar.gz"),
                   size=791_918_971,
                   checksum="sha256:67195c5e1c01f1ab5f9b6a5d22b8c27a580d896ece458917e61d459337fa318d"),
        RemoteFile("annotations.tar.gz", unpack("annotations", "oxford_pets/annotations"),
                   urls=("https://thor.robots.ox.ac.uk/~vgg/data/pets/annotations.tar.gz",
                         f"{_VGG}/pets/data/annotations.tar.gz"),
                   size=19_173_078,
                   checksum="sha256:52425fb6de5c424942b7626b428656fcbd798db970a937df61750c0f1d358e91"),
    ),
    split_drive_id="1501r8Ber4nNKvmlFVQZ8SeUHTcdTTEqs",
    betas=(0.61, 0.01), tip_adapter=_tip((7, 3), 1.17),
)

STANFORD_CARS = coop_json(
    name="stanford_cars", title="StanfordCars", template="a photo of a {}.", aliases=("cars",),
    folder="stanford_cars", image_dir="",
    tree="cars_train/NNNNN.jpg\ncars_test/NNNNN.jpg\ndevkit/, cars_test_annos_withlabels.mat   (not read)",
    images_from="cars_train.tgz, cars_test.tgz, car_devkit.tgz, cars_test_annos_withlabels.mat (Stanford Cars, "
                "http://ai.stanford.edu/~jkrause/cars/car_dataset.html; the original host is offline, mirrors are "
                "discussed in pytorch/vision#7545)",
    release_title="Stanford Cars", access="mirror",
    origin=("`cars_train.tgz`, `cars_test.tgz`, `car_devkit.tgz`, `cars_test_annos_withlabels.mat` (Stanford; the "
            "original host is offline, see pytorch/vision#7545 for mirrors)"),
    sizes=SplitSizes(196, 6_509, 1_635, 8_041),
    files=(
        RemoteFile("cars_train.tgz", unpack("cars_train", "stanford_cars/cars_train"), size=979_269_282,
                   checksum="sha256:512b227b30e2f0a8aab9e09485786ab4479582073a144998da74d64b801fd288"),
        RemoteFile("cars_test.tgz", unpack("cars_test", "stanford_cars/cars_test"), size=977_350_468,
                   checksum="sha256:bffea656d6f425cba3c91c6d83336e4c5f86c6cffd8975b0f375d3a10da8e243"),
        RemoteFile("car_devkit.tgz", unpack("devkit", "stanford_cars/devkit"), size=330_960,
                   checksum="sha256:b97deb463af7d58b6bfaa18b2a4de9829f0f79e8ce663dfa9261bf7810e9accd"),
        RemoteFile("cars_test_annos_withlabels.mat", copy_to("stanford_cars/cars_test_annos_withlabels.mat"),
                   size=185_758, checksum="sha256:790f75be8ea34eeded134cc559332baf23e30e91367e9ddca97d26ed9b895f05"),
    ),
    split_drive_id="1ObCFbaAgVu0I-k_Au-gIUcefirdAuizT",
    instructions=(
        "the official Stanford Cars host is gone (pytorch/vision#7545) and torchvision removed its download; "
        "calip3d downloads no unofficial copy. Give a mirror that holds the exact files cars_train.tgz, "
        "cars_test.tgz, car_devkit.tgz and cars_test_annos_withlabels.mat (checked by their published "
        "sha256): `--mirror URL` or CALIP3D_MIRROR. Or place them yourself: {root}/stanford_cars/cars_train/, "
        "cars_test/, devkit/ (extracted from the .tgz files) and cars_test_annos_withlabels.mat, with CoOp's "
        f"split_zhou_StanfordCars.json ({COOP_DATASETS_MD})."),
    betas=(2.8, 0.01), tip_adapter=_tip((20, 10), 3),
)

OXFORD_FLOWERS = coop_json(
    name="oxford_flowers", title="OxfordFlowers", template="a photo of a {}, a type of flower.",
    aliases=("flowers102", "flowers", "oxford_flowers102"),
    folder="oxford_flowers", image_dir="jpg", tree="jpg/image_NNNNN.jpg\nimagelabels.mat, cat_to_name.json   (not read)",
    images_from="102flowers.tgz (Oxford Flowers102, https://www.robots.ox.ac.uk/~vgg/data/flowers/102/)",
    release_title="Oxford Flowers102",
    origin="`102flowers.tgz`, https://www.robots.ox.ac.uk/~vgg/data/flowers/102/",
    sizes=SplitSizes(102, 4_093, 1_633, 2_463),
    files=(
        RemoteFile("102flowers.tgz", unpack("jpg", "oxford_flowers/jpg"),
                   urls=(f"{_VGG}/flowers/102/102flowers.tgz",), size=344_862_509,
                   checksum="sha256:2d01ecc807db462958cfe3d92f57a8c252b4abd240eb955770201e45f783b246"),
        RemoteFile("imagelabels.mat", copy_to("oxford_flowers/imagelabels.mat"),
                   urls=(f"{_VGG}/flowers/102/imagelabels.mat",), size=502,
                   checksum="sha256:4903e94206bac23bf772aadf06451916df56b58fc483a62db32a97b82656651d"),
        RemoteFile("setid.mat", copy_to("oxford_flowers/setid.mat"),
                   urls=(f"{_VGG}/flowers/102/setid.mat",), size=14_989,
                   checksum="sha256:46b8678f91fd95d3c8f4feab80d271a6c834a1dd896fe29fd3e6ad9ce5c8dccd"),
        RemoteFile("cat_to_name.json", copy_to("oxford_flowers/cat_to_name.json"),
                   gdrive_id="1AkcxCXeK_RCGCEC_GvmWxjcjaNhu-at0"),
    ),
    split_drive_id="1Pp0sRXzZFZq15zVOzKjKBu4A9i01nozT",
    betas=(0.5, 0.01), tip_adapter=_tip((50, 50), 10),
)

FOOD101 = coop_json(
    name="food101", title="Food101", template="a photo of {}, a type of food.", aliases=("food",),
    folder="food-101", image_dir="images",
    tree="images/<class>/<id>.jpg\nmeta/, README.txt, license_agreement.txt   (not read)",
    images_from="food-101.tar.gz (Food-101, https://data.vision.ee.ethz.ch/cvl/datasets_extra/food-101/)",
    release_title="Food-101",
    origin="`food-101.tar.gz`, https://data.vision.ee.ethz.ch/cvl/datasets_extra/food-101/",
    sizes=SplitSizes(101, 50_500, 20_200, 30_300),
    files=(RemoteFile("food-101.tar.gz", unpack("food-101", "food-101"),
                      urls=("http://data.vision.ee.ethz.ch/cvl/food-101.tar.gz",), size=4_996_278_331,
                      checksum="sha256:d97d15e438b7f4498f96086a4f7e2fa42a32f2712e87d3295441b2b6314053a4"),),
    split_drive_id="1QK0tGi096I0Ba6kggatX1ee6dJFIcEJl",
    betas=(0.6, 0.02), tip_adapter=_tip((10, 10), 1.17),
)

FGVC_AIRCRAFT = DatasetRecord(
    name="fgvc_aircraft", kind=IMAGES, title="FGVCAircraft", template="a photo of a {}, a type of aircraft.",
    aliases=("aircraft",),
    image=ImageLayout(
        folder="fgvc_aircraft", image_dir="images", split_file="images_variant_{split}.txt", fmt="fgvc",
        layout="fgvc_aircraft/                  (the data/ folder of fgvc-aircraft-2013b, renamed)\n"
               "|-- images/<imageid>.jpg\n"
               "|-- variants.txt                 one variant name per line (class order)\n"
               "`-- images_variant_{train,val,test}.txt   lines '<imageid> <variant name>'",
        source="fgvc-aircraft-2013b.tar.gz (FGVC-Aircraft, "
               "https://www.robots.ox.ac.uk/~vgg/data/fgvc-aircraft/); keep its data/ folder and rename it "
               "to fgvc_aircraft/ (no CoOp json for this dataset)"),
    releases=(Release(
        key="fgvc_aircraft", title="FGVC-Aircraft", folder="fgvc_aircraft", loaders=("fgvc_aircraft",),
        files=(RemoteFile("fgvc-aircraft-2013b.tar.gz", unpack("fgvc-aircraft-2013b/data", "fgvc_aircraft"),
                          urls=(f"{_VGG}/fgvc-aircraft/archives/fgvc-aircraft-2013b.tar.gz",),
                          size_hint="2.75 GB"),),
        origin="`fgvc-aircraft-2013b.tar.gz`, https://www.robots.ox.ac.uk/~vgg/data/fgvc-aircraft/"),),
    sizes=(SplitSizes(100, 3_334, 3_333, 3_333),),
    val_split=True, betas=(1.3, 0.01), tip_adapter=_tip((30, 30), 5),
)

SUN397 = coop_json(
    name="sun397", title="SUN397", template="a photo of a {}.", aliases=("sun",),
    folder="sun397", image_dir="SUN397", tree="SUN397/<letter>/<scene>/sun_*.jpg",
    images_from="SUN397.tar.gz (SUN397, https://vision.princeton.edu/projects/2010/SUN/; the original URLs are "
                "reported dead in CoOp #90)",
    release_title="SUN397", access="mirror",
    origin=("`SUN397.tar.gz`, https://vision.princeton.edu/projects/2010/SUN/ (the URLs are reported dead, "
            "CoOp #90)"),
    sizes=SplitSizes(397, 15_880, 3_970, 19_850),
    files=(RemoteFile("SUN397.tar.gz", unpack("SUN397", "sun397/SUN397"), size=39_077_296_924,
                      checksum="sha256:f404130965a7ad77bed5ececc71e720ab50f3cc1e1bb257257610d38f3b928ec"),),
    split_drive_id="1y2RD81BYuiyvebdN-JymPfyWYcd8_MUq",
    instructions=(
        "the official https://vision.princeton.edu/projects/2010/SUN/SUN397.tar.gz is dead (pytorch/vision#9348, "
        "CoOp#90); calip3d downloads no unofficial copy. Give a mirror that holds the exact SUN397.tar.gz "
        "(checked by its published sha256): `--mirror URL` or CALIP3D_MIRROR. Or place it yourself: extract it "
        "so that {root}/sun397/SUN397/<letter>/<scene>/sun_*.jpg exist, with CoOp's split_zhou_SUN397.json "
        f"({COOP_DATASETS_MD}) at {{root}}/sun397/split_zhou_SUN397.json."),
    betas=(0.43, 0.01), tip_adapter=_tip((12, 10), 1.17),
)

DTD = coop_json(
    name="dtd", title="DescribableTextures", template="{} texture.", aliases=("textures", "describable_textures"),
    folder="dtd", image_dir="images", tree="images/<texture>/<texture>_NNNN.jpg\nimdb/, labels/   (not read)",
    images_from="dtd-r1.0.1.tar.gz (DTD, https://www.robots.ox.ac.uk/~vgg/data/dtd/)",
    release_title="Describable Textures (DTD)",
    origin="`dtd-r1.0.1.tar.gz`, https://www.robots.ox.ac.uk/~vgg/data/dtd/",
    sizes=SplitSizes(47, 2_820, 1_128, 1_692),
    files=(RemoteFile("dtd-r1.0.1.tar.gz", unpack("dtd", "dtd"), urls=(f"{_VGG}/dtd/download/dtd-r1.0.1.tar.gz",),
                      size=625_239_812,
                      checksum="sha256:e42855a52a4950a3b59612834602aa253914755c95b0cff9ead6d07395f8e205"),),
    split_drive_id="1u3_QfB467jqHgNXC00UIzbLZRQCg2S7x",
    betas=(1.4, 0.01), tip_adapter=_tip((13, 13), 2),
)

EUROSAT = coop_json(
    name="eurosat", title="EuroSAT", template="a centered satellite photo of {}.",
    folder="eurosat", image_dir="2750", tree="2750/<Class>/<Class>_N.jpg",
    images_from="EuroSAT.zip, RGB version (EuroSAT, https://github.com/phelber/EuroSAT; formerly "
                "http://madm.dfki.de/files/sentinel/EuroSAT.zip)",
    release_title="EuroSAT (RGB)",
    origin="`EuroSAT.zip` (RGB), https://github.com/phelber/EuroSAT",
    sizes=SplitSizes(10, 13_500, 5_400, 8_100),
    files=(RemoteFile("EuroSAT.zip", unpack("2750", "eurosat/2750"),
                      urls=("https://huggingface.co/datasets/torchgeo/eurosat/resolve/"
                            "c877bcd43f099cd0196738f714544e355477f3fd/EuroSAT.zip",),
                      checksum="md5:c8fa014336c82ac7804f0398fcb19387"),),
    split_drive_id="1Ip7yaCWFi0eaOFUGga0lUdVi_DDQth1o",
    classname_map=EUROSAT_CLASSNAMES,
    betas=(6.08, 0.06), tip_adapter=_tip((12, 10), 2, epochs=100),
)

UCF101 = coop_json(
    name="ucf101", title="UCF101", template="a photo of a person doing {}.", aliases=("ucf",),
    folder="ucf101", image_dir="UCF-101-midframes", tree="UCF-101-midframes/<Action_Name>/v_*.jpg",
    images_from=f"UCF-101-midframes.zip (CoOp's middle frames of UCF101, linked from CoOp's DATASETS.md "
                f"{COOP_DATASETS_MD}; videos: https://www.crcv.ucf.edu/data/UCF101.php)",
    release_title="UCF101 (CoOp's middle frames)",
    origin=("`UCF-101-midframes.zip` (CoOp's middle frames, linked from CoOp's DATASETS.md; videos: "
            "https://www.crcv.ucf.edu/data/UCF101.php)"),
    sizes=SplitSizes(101, 7_639, 1_898, 3_783),
    files=(RemoteFile("UCF-101-midframes.zip", unpack("UCF-101-midframes", "ucf101/UCF-101-midframes"),
                      gdrive_id="10Jqome3vtUA2keJkNanAiFpgbyC9Hc2O"),),
    split_drive_id="1I0S0q91hJfsV9Gf4xDIjgDq4AqBNJb1y",
    betas=(1.28, 0.01), tip_adapter=_tip((7, 3), 3),
)

# CoOp's order (their tables', and calip3d's).
COOP_RECORDS: tuple[DatasetRecord, ...] = (
    IMAGENET, CALTECH101, OXFORD_PETS, STANFORD_CARS, OXFORD_FLOWERS, FOOD101, FGVC_AIRCRAFT, SUN397, DTD, EUROSAT,
    UCF101,
)
