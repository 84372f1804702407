"""CLIP backbones from open_clip, with the global and spatial visual tokens CALIP needs.

`load_backbone` resolves a model (built-in name, `hf-hub:`/`local-dir:` schema, or a model-config JSON file) and its
weights (an open_clip tag or a local checkpoint file), refuses image towers that cannot give CALIP's spatial tokens,
and returns a `CLIPBackbone` in eval mode together with the model's own validation transform.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import warnings
import zipfile
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Callable, Sequence

import torch
import torch.nn.functional as F

from .errors import CalipError

PRECISIONS = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
CHECKPOINT_SUFFIXES = (".pt", ".pth", ".bin", ".safetensors")
REQUIRED_CONFIG_KEYS = ("embed_dim", "vision_cfg", "text_cfg")
_SUPPORTED = (
    "CALIP needs spatial visual tokens in the joint image-text space: use a ModifiedResNet (RN50, RN101, RN50x4, "
    "...) or a standard class-token ViT (ViT-B-32, ViT-B-16, ViT-L-14, ...)."
)


def _open_clip():
    import open_clip

    return open_clip


@dataclass
class BackboneInfo:
    """Provenance of a loaded backbone (written into every result file)."""

    name: str
    pretrained: str | None
    weights: str  # "tag:<tag>", "file:<path> sha256:<hex>", "schema", or "random"
    quick_gelu: bool
    architecture: str  # "resnet" or "vit"
    image_size: int
    embed_dim: int
    extra: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        """Every field (`extra` merged in): the provenance of results and part of every feature-cache key."""
        return {**{f.name: getattr(self, f.name) for f in fields(self) if f.name != "extra"}, **self.extra}


# The open_clip internals CLIPBackbone reads, per image-tower kind (checked when a backbone is built, so that an
# open_clip release that moves one fails loudly, naming it, instead of computing something else).
OPEN_CLIP_ATTRIBUTES: dict[str, tuple[str, ...]] = {
    "resnet": ("visual.conv1.weight", "visual.image_size", "visual.stem", "visual.layer1", "visual.layer2",
               "visual.layer3", "visual.layer4", "visual.attnpool.positional_embedding", "visual.attnpool.num_heads",
               "visual.attnpool.q_proj", "visual.attnpool.k_proj", "visual.attnpool.v_proj",
               "visual.attnpool.c_proj", "encode_image", "encode_text"),
    "vit": ("visual.conv1.weight", "visual.image_size", "visual._embeds", "visual.transformer", "visual.ln_post",
            "visual.proj", "visual.attn_pool", "visual.pool_type", "visual.final_ln_after_pool", "encode_image",
            "encode_text"),
}
SUPPORTED_OPEN_CLIP = ">=3.0,<3.4"  # the open_clip_torch releases the tests pass with (as pinned in pyproject.toml)


def check_open_clip_attributes(model: torch.nn.Module, architecture: str) -> None:
    """Raise `CalipError` naming the first open_clip attribute (of `OPEN_CLIP_ATTRIBUTES`) that `model` lacks."""
    for dotted in OPEN_CLIP_ATTRIBUTES[architecture]:
        obj = model
        for part in dotted.split("."):
            if not hasattr(obj, part):
                import open_clip

                raise CalipError(
                    f"this open_clip release ({getattr(open_clip, '__version__', '?')}) has no `{dotted}` on "
                    f"{type(model).__name__}, which calip3d reads to get CALIP's spatial tokens; install a supported "
                    f"release: pip install 'open_clip_torch{SUPPORTED_OPEN_CLIP}'")
            obj = getattr(obj, part)


class CLIPBackbone(torch.nn.Module):
    """Wraps an open_clip CLIP model: global + spatial image tokens and class text features, all L2-normalised.

    ModifiedResNet towers: the attention pooling is run with every position as a query (HW+1 outputs, as the
    official CALIP code modifies CLIP); output 0 is the global feature (equal to `encode_image`), outputs 1..HW the
    spatial features. ViT towers with a class token: `ln_post` and `proj` are applied to every token; CLS is global.

    `transform` is the model's own validation transform for images and `info` its provenance (both set by
    `load_backbone`; for a model wrapped directly they are derived from the model, the weights identified by a
    digest of its state dict).
    """

    def __init__(self, model: torch.nn.Module, tokenizer: Callable | None = None, transform: Callable | None = None,
                 info: "BackboneInfo | None" = None) -> None:
        super().__init__()
        self.model = model.eval()
        self.architecture = check_spatial_support(model)
        check_open_clip_attributes(model, self.architecture)
        self.tokenizer = tokenizer or _default_tokenizer(model)
        self.transform = transform if transform is not None else _val_transform(model, None)
        self._info = info
        self._compiled_tokens: Callable[[torch.Tensor], torch.Tensor] | None = None

    @property
    def info(self) -> "BackboneInfo":
        """Provenance; derived on first use for a model wrapped directly (weights = a digest of its state)."""
        if self._info is None:
            self._info = self._state_info()
        return self._info

    @info.setter
    def info(self, value: "BackboneInfo") -> None:
        self._info = value

    def _state_info(self) -> "BackboneInfo":
        digest = hashlib.sha256()
        for key, value in self.model.state_dict().items():
            digest.update(key.encode())
            digest.update(value.detach().cpu().reshape(-1).contiguous().view(torch.uint8).numpy().tobytes())
        quick = any(type(m).__name__ == "QuickGELU" for m in self.model.modules())
        return BackboneInfo(name=type(self.model).__name__, pretrained=None, weights=f"state sha256:{digest.hexdigest()}",
                            quick_gelu=quick, architecture=self.architecture, image_size=self.image_size,
                            embed_dim=self.embed_dim)

    @property
    def precision(self) -> str:
        """`fp32`, `fp16` or `bf16`: the image tower's compute precision."""
        return next(name for name, dtype in PRECISIONS.items() if dtype == self.dtype)

    @property
    def visual(self) -> torch.nn.Module:
        return self.model.visual

    @property
    def image_size(self) -> int:
        size = getattr(self.visual, "image_size", 224)
        return int(size[0] if isinstance(size, (tuple, list)) else size)

    @property
    def embed_dim(self) -> int:
        if self.architecture == "vit":
            return int(self.visual.proj.shape[1])
        return int(self.visual.attnpool.c_proj.out_features)

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        """The image tower's compute dtype (its first convolution's; open_clip keeps some parameters in fp32)."""
        return self.visual.conv1.weight.dtype

    @property
    def compiled(self) -> bool:
        """Whether the image tower runs through `torch.compile` (`compile_image_tower`)."""
        return self._compiled_tokens is not None

    def compile_image_tower(self) -> "CLIPBackbone":
        """Run the image tower (and the spatial-token head) through `torch.compile` from now on: the first batch of
        each shape compiles, later ones run the compiled graph. Returns self."""
        self._compiled_tokens = torch.compile(self._image_tokens, dynamic=False)
        return self

    @torch.no_grad()
    def encode_image(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Images `[B, 3, S, S]` -> (global `[B, D]`, spatial `[B, N, D]`), both L2-normalised per row."""
        glob, spatial, _ = self.encode_image_norms(images)
        return glob, spatial

    @torch.no_grad()
    def encode_image_norms(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """`encode_image` plus the global feature's norm before normalisation `[B]` (float32): `global * norm` is
        CLIP's raw image feature, which some released baselines use."""
        images = images.to(device=self.device, dtype=self.dtype, non_blocking=True)
        tokens = (self._compiled_tokens or self._image_tokens)(images)
        norms = tokens[:, 0].float().norm(dim=-1)
        tokens = F.normalize(tokens, dim=-1)
        return tokens[:, 0], tokens[:, 1:], norms

    def _image_tokens(self, images: torch.Tensor) -> torch.Tensor:
        """The global token then the spatial tokens, `[B, 1+N, D]`, not normalised."""
        return self._resnet_tokens(images) if self.architecture == "resnet" else self._vit_tokens(images)

    @torch.no_grad()
    def encode_global(self, images: torch.Tensor) -> torch.Tensor:
        """Images `[B, 3, S, S]` -> open_clip's `encode_image`, L2-normalised `[B, D]` (plain CLIP, no spatial tokens)."""
        images = images.to(device=self.device, dtype=self.dtype)
        return F.normalize(self.model.encode_image(images), dim=-1)

    def _resnet_tokens(self, images: torch.Tensor) -> torch.Tensor:
        """All HW+1 outputs of the attention pooling, `[B, HW+1, D]`."""
        vis = self.visual
        x = vis.stem(images)
        x = vis.layer4(vis.layer3(vis.layer2(vis.layer1(x))))
        pool = vis.attnpool
        x = x.flatten(2).permute(2, 0, 1)  # [HW, B, C]
        x = torch.cat([x.mean(dim=0, keepdim=True), x], dim=0)
        pos = pool.positional_embedding
        if pos.shape[0] != x.shape[0]:
            raise CalipError(
                f"input images give {x.shape[0] - 1} positions but the attention pooling was trained for "
                f"{pos.shape[0] - 1}; feed images of the model's own size ({self.image_size}px)"
            )
        x = x + pos[:, None, :].to(x.dtype)
        out, _ = F.multi_head_attention_forward(
            query=x, key=x, value=x, embed_dim_to_check=x.shape[-1], num_heads=pool.num_heads,
            q_proj_weight=pool.q_proj.weight, k_proj_weight=pool.k_proj.weight, v_proj_weight=pool.v_proj.weight,
            in_proj_weight=None, in_proj_bias=torch.cat([pool.q_proj.bias, pool.k_proj.bias, pool.v_proj.bias]),
            bias_k=None, bias_v=None, add_zero_attn=False, dropout_p=0.0,
            out_proj_weight=pool.c_proj.weight, out_proj_bias=pool.c_proj.bias,
            use_separate_proj_weight=True, training=False, need_weights=False,
        )
        return out.permute(1, 0, 2)

    def _vit_tokens(self, images: torch.Tensor) -> torch.Tensor:
        """`ln_post` and `proj` applied to every token, `[B, 1+HW, D]` (CLS first)."""
        vis = self.visual
        x = vis.transformer(vis._embeds(images))
        return vis.ln_post(x) @ vis.proj

    @torch.no_grad()
    def encode_text(self, texts: Sequence[str]) -> torch.Tensor:
        """Sentences -> `[len(texts), D]`, each row L2-normalised."""
        tokens = self.tokenizer(list(texts)).to(self.device)
        return F.normalize(self.model.encode_text(tokens).float(), dim=-1)

    def prompt_features(self, prompts: Sequence[Sequence[str]], batch_size: int = 256) -> torch.Tensor:
        """Per class, a list of sentences -> `[K, D]`: the normalised mean of the normalised sentence embeddings."""
        flat = [p for group in prompts for p in group]
        if any(len(group) == 0 for group in prompts):
            raise CalipError("every class needs at least one prompt")
        feats = torch.cat([self.encode_text(flat[i:i + batch_size]) for i in range(0, len(flat), batch_size)])
        counts = torch.tensor([len(group) for group in prompts], device=feats.device)
        owner = torch.repeat_interleave(torch.arange(len(prompts), device=feats.device), counts)
        sums = torch.zeros(len(prompts), feats.shape[1], device=feats.device).index_add_(0, owner, feats)
        return F.normalize(sums / counts[:, None], dim=-1)

    def class_features(self, classnames: Sequence[str], templates: Sequence[str]) -> torch.Tensor:
        """`[K, D]`: per class, the normalised mean of its normalised template embeddings."""
        return self.prompt_features([[t.format(c) for t in templates] for c in classnames])


def check_spatial_support(model: torch.nn.Module) -> str:
    """Return "resnet" or "vit" when the image tower gives CALIP's spatial tokens; raise `CalipError` otherwise."""
    vis = getattr(model, "visual", None)
    kind = type(vis).__name__
    if kind == "ModifiedResNet":
        return "resnet"
    if kind == "VisionTransformer":
        if getattr(vis, "attn_pool", None) is not None:
            reason = "it pools with an attentional pooler (CoCa-style), so its tokens are not in the joint space"
        elif getattr(vis, "pool_type", "tok") != "tok":
            reason = f"it pools by '{vis.pool_type}' instead of a class token (CLIPA-style), so it has no CLS global"
        elif getattr(vis, "final_ln_after_pool", False):
            reason = "it applies its final LayerNorm after pooling, so patch tokens are not comparable to the global"
        elif getattr(vis, "proj", None) is None:
            reason = "it has no output projection into the joint embedding space"
        else:
            return "vit"
    elif kind == "TimmModel":
        reason = "it is a timm image tower, whose spatial tokens open_clip does not project into the joint space"
    else:
        reason = f"its image tower ({kind}) is not a ModifiedResNet or a class-token ViT"
    raise CalipError(f"this model cannot be used with CALIP: {reason}. {_SUPPORTED}")


def _default_tokenizer(model: torch.nn.Module) -> Callable:
    open_clip = _open_clip()
    return open_clip.SimpleTokenizer(context_length=int(getattr(model, "context_length", 77)))


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def read_model_config(path: str | Path) -> dict[str, Any]:
    """Read an open_clip model-config JSON (the format of open_clip's `model_configs/*.json`) and validate it."""
    path = Path(path)
    try:
        cfg = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise CalipError(f"cannot read model config {path}: {err}") from None
    missing = [k for k in REQUIRED_CONFIG_KEYS if not isinstance(cfg, dict) or k not in cfg]
    if missing:
        raise CalipError(
            f"{path} is not an open_clip model config: missing {', '.join(missing)} "
            f"(expected keys {', '.join(REQUIRED_CONFIG_KEYS)}, as in open_clip's model_configs/*.json)"
        )
    _refuse_unsupported_config(cfg, str(path))
    return cfg


def _refuse_unsupported_config(cfg: dict[str, Any], what: str) -> None:
    """Refuse, before any download, configs whose image tower cannot give CALIP's spatial tokens."""
    vision = cfg.get("vision_cfg", {})
    if "multimodal_cfg" in cfg:
        reason = "it is a CoCa model, whose attentional pooling gives no spatial tokens in the joint space"
    elif "timm_model_name" in vision:
        reason = "it uses a timm image tower, whose spatial tokens open_clip does not project into the joint space"
    elif vision.get("attentional_pool"):
        reason = "its image tower pools with an attentional pooler"
    elif isinstance(vision.get("layers"), int) and vision.get("pool_type", "tok") != "tok":
        reason = f"its ViT pools by '{vision['pool_type']}' instead of a class token (CLIPA-style)"
    elif isinstance(vision.get("layers"), int) and vision.get("final_ln_after_pool"):
        reason = "its ViT applies the final LayerNorm after pooling"
    else:
        return
    raise CalipError(f"{what} cannot be used with CALIP: {reason}. {_SUPPORTED}")


def _is_torchscript(path: Path) -> bool:
    if not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as archive:
        return any(n.split("/", 1)[-1].startswith("code/") or n.endswith("/constants.pkl") for n in archive.namelist())


def _load_torchscript_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """OpenAI's original TorchScript files: read through the TorchScript loader (no Python unpickling)."""
    state = torch.jit.load(str(path), map_location="cpu").state_dict()
    for key in ("input_resolution", "context_length", "vocab_size"):
        state.pop(key, None)
    return {k: v.float() if v.is_floating_point() else v for k, v in state.items()}


def _offline_message(name: str, tag: str, cache_dir: str | None, err: Exception) -> str:
    cache = cache_dir or os.environ.get("HF_HUB_CACHE") or os.path.join(
        os.environ.get("HF_HOME", os.path.expanduser("~/.cache/huggingface")), "hub")
    offline = os.environ.get("HF_HUB_OFFLINE", "") not in ("", "0")
    return (
        f"could not load the pretrained weights '{tag}' for {name}: they are not in the local cache ({cache}) and "
        f"{'HF_HUB_OFFLINE is set, so the hub was not asked' if offline else 'the hub could not be reached'}. "
        "Either give a local checkpoint file, BackboneConfig.pretrained=PATH (.pt/.bin/.safetensors; OpenAI's original "
        ".pt files work too, with BackboneConfig.quick_gelu=True for OpenAI weights), or copy the hub files into that "
        "cache on a connected machine (BackboneConfig.weights_cache or HF_HUB_CACHE chooses another location) and set "
        "HF_HUB_OFFLINE=1 to skip the network. "
        f"(open_clip said: {str(err).split('. ')[0]}.)"
    )


@contextlib.contextmanager
def _quiet_hub():
    """Silence the hub client's retry chatter and open_clip's logging while weights are fetched; honour
    HF_HUB_OFFLINE even when huggingface_hub was imported before the variable was set."""
    import huggingface_hub.constants as hub_constants

    if os.environ.get("HF_HUB_OFFLINE", "") not in ("", "0"):
        hub_constants.HF_HUB_OFFLINE = True
    loggers = [logging.getLogger(), logging.getLogger("huggingface_hub")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        for lg, level in zip(loggers, levels):
            lg.setLevel(level)


def resolve_device(name: str) -> torch.device:
    """`auto` (CUDA when available, else CPU), `cpu`, `cuda`, `cuda:N`; a CUDA device without a GPU is an error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise CalipError(f"unknown BackboneConfig.device {name!r}; use auto, cpu, cuda or cuda:N") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise CalipError(f"BackboneConfig.device {name!r} asks for CUDA but no CUDA GPU is available; use "
                         "BackboneConfig.device='cpu'")
    return device


def default_precision(device: torch.device) -> str:
    """fp16 on CUDA, fp32 elsewhere."""
    return "fp16" if device.type == "cuda" else "fp32"


@dataclass(frozen=True)
class BackboneConfig:
    """Which model and weights to load, and where: the arguments of `load_backbone` as a typed config.

    `pretrained` None = random weights (timing only); `precision` None = `default_precision(device)`; `quick_gelu`
    None = automatic (see `load_backbone`); `compile`: the image tower through `torch.compile`."""

    name: str = "RN50"
    pretrained: str | None = "openai"
    quick_gelu: bool | None = None
    weights_cache: str | None = None
    device: str = "auto"
    precision: str | None = None
    compile: bool = False

    def __post_init__(self) -> None:
        if self.precision is not None and self.precision not in PRECISIONS:
            raise CalipError(f"BackboneConfig.precision must be one of {', '.join(PRECISIONS)} or None, got "
                             f"{self.precision!r}")
        if self.device != "auto":
            try:
                torch.device(self.device)
            except (RuntimeError, TypeError):
                raise CalipError(f"unknown BackboneConfig.device {self.device!r}; use auto, cpu, cuda or cuda:N") \
                    from None

    def load(self) -> "CLIPBackbone":
        """The loaded backbone (its `transform` and `info` attached)."""
        device = resolve_device(self.device)
        backbone, _, _ = load_backbone(self.name, self.pretrained, device=device,
                                       precision=self.precision or default_precision(device),
                                       quick_gelu=self.quick_gelu, cache_dir=self.weights_cache)
        return backbone.compile_image_tower() if self.compile else backbone


def load_backbone(
    name: str,
    pretrained: str | None = None,
    device: str | torch.device = "cpu",
    precision: str = "fp32",
    quick_gelu: bool | None = None,
    cache_dir: str | None = None,
) -> tuple[CLIPBackbone, Callable, BackboneInfo]:
    """Load an open_clip model for CALIP.

    `name`: an open_clip model name (`RN50`, `ViT-B-16`, `ViT-B/16` also accepted), `hf-hub:org/repo`,
    `local-dir:/path`, or the path of an open_clip model-config JSON. `pretrained`: an open_clip tag (`openai`,
    `laion2b_s34b_b79k`, ...), a local checkpoint file (.pt/.pth/.bin/.safetensors, OpenAI TorchScript included), or
    None for random weights (tests only). `quick_gelu`: None = automatic (on for OpenAI TorchScript files and for
    tags trained with QuickGELU, such as `openai`; off for other files unless the config says so).
    Returns (backbone in eval mode, val transform, info); the backbone also carries the transform and info.
    """
    if precision not in PRECISIONS:
        raise CalipError(f"BackboneConfig.precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    device = torch.device(device)
    pretrained_path = _checkpoint_path(pretrained)
    source = _resolve_model(name, pretrained, pretrained_path)
    torchscript = pretrained_path is not None and _is_torchscript(pretrained_path)
    if quick_gelu is None:
        quick_gelu = _automatic_quick_gelu(source, pretrained_path, torchscript)
    if pretrained_path is not None:
        _check_checkpoint_file(pretrained_path)
    model = _build_model(source, pretrained, pretrained_path, torchscript, quick_gelu, precision, device, cache_dir)
    model = model.to(device).eval()
    backbone = CLIPBackbone(model, _tokenizer_for(source.name, model, source.config, source.schema),
                            _val_transform(model, source.config))
    backbone.info = BackboneInfo(
        name=str(source.config_path or source.name), pretrained=pretrained,
        weights=_weights_id(source, pretrained, pretrained_path), quick_gelu=quick_gelu,
        architecture=backbone.architecture, image_size=backbone.image_size, embed_dim=backbone.embed_dim,
        extra=source.extra,
    )
    return backbone, backbone.transform, backbone.info


@dataclass
class _ModelSource:
    """Where a model's architecture comes from: a built-in name, a hub/local-dir schema or a config JSON."""

    name: str
    config: dict[str, Any] | None
    config_path: Path | None = None
    schema: bool = False
    tag_cfg: dict[str, Any] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)


def _checkpoint_path(pretrained: str | None) -> Path | None:
    """The checkpoint file `pretrained` names, or None when it is a weights tag (or None)."""
    looks_like_file = pretrained and (Path(pretrained).suffix in CHECKPOINT_SUFFIXES or os.sep in pretrained
                                      or Path(pretrained).is_file())
    if not looks_like_file:
        return None
    path = Path(pretrained)
    if not path.is_file():
        raise CalipError(f"checkpoint file not found: {path}")
    return path


def _resolve_model(name: str, pretrained: str | None, pretrained_path: Path | None) -> _ModelSource:
    """Validate the model name / config file and the weights tag before anything is downloaded."""
    open_clip = _open_clip()
    if name.startswith(("hf-hub:", "local-dir:")):
        return _ModelSource(name=name, config=None, schema=True)
    if name.endswith(".json"):
        config_path = Path(name)
        if not config_path.is_file():
            raise CalipError(f"model config file not found: {config_path}")
        config = read_model_config(config_path)
        if pretrained and pretrained_path is None:
            raise CalipError(
                f"with a model-config JSON ({config_path}), BackboneConfig.pretrained must be a checkpoint file; "
                f"{pretrained!r} is not one (weights tags belong to built-in model names such as RN50)"
            )
        return _ModelSource(name=name, config=config, config_path=config_path,
                            extra={"config_sha256": sha256_file(config_path)})
    name = name.replace("/", "-")
    config = open_clip.get_model_config(name)
    if config is None:
        raise CalipError(
            f"unknown model {name!r}. Known open_clip models include RN50, RN101, RN50x4, RN50x16, ViT-B-32, "
            "ViT-B-16, ViT-L-14 (see open_clip.list_models()); a path to a model-config JSON also works"
        )
    _refuse_unsupported_config(config, name)
    tag_cfg: dict[str, Any] = {}
    if pretrained and pretrained_path is None:
        tag_cfg = open_clip.get_pretrained_cfg(name, pretrained) or {}
        if not tag_cfg:
            tags = open_clip.list_pretrained_tags_by_model(name)
            raise CalipError(
                f"{pretrained!r} is neither a checkpoint file nor a known weights tag for {name} "
                f"(known tags: {', '.join(tags) or 'none'})"
            )
    return _ModelSource(name=name, config=config, tag_cfg=tag_cfg)


def _automatic_quick_gelu(source: _ModelSource, pretrained_path: Path | None, torchscript: bool) -> bool:
    """OpenAI's TorchScript files are always QuickGELU models (as open_clip's own OpenAI loader assumes); tags and
    configs say so themselves. Warn for a file that looks like OpenAI weights but gets no QuickGELU."""
    quick_gelu = torchscript or bool(source.tag_cfg.get("quick_gelu", False)) \
        or bool((source.config or {}).get("quick_gelu", False))
    if pretrained_path is not None and not quick_gelu and "openai" in pretrained_path.name.lower():
        warnings.warn(f"{pretrained_path.name} looks like OpenAI weights, which need QuickGELU: add --quick-gelu "
                      "(without it accuracy drops silently)", stacklevel=3)
    return quick_gelu


def _weights_id(source: _ModelSource, pretrained: str | None, pretrained_path: Path | None) -> str:
    """`file:<path> sha256:<hex>`, `schema`, `tag:<tag>` or `random` (with a warning)."""
    if pretrained_path is not None:
        return f"file:{pretrained_path} sha256:{sha256_file(pretrained_path)}"
    if source.schema:
        return "schema"
    if pretrained:
        return f"tag:{pretrained}"
    warnings.warn(f"no pretrained weights given for {source.name}: the model has random weights", stacklevel=3)
    return "random"


def _corrupt_checkpoint(path: Path, detail: str) -> CalipError:
    return CalipError(
        f"the weights file {path} could not be read: it is truncated, corrupt or not a checkpoint ({detail}). "
        "An interrupted download is the usual cause: download it again (compare its size or checksum with the "
        "source), and check that it is an open_clip or OpenAI CLIP checkpoint in one of the formats .pt/.pth/.bin "
        "(torch.save or OpenAI's TorchScript archive) or .safetensors."
    )


def _check_checkpoint_file(path: Path) -> None:
    """Refuse an empty, truncated or foreign weights file with one clear error, before the model is built."""
    if path.stat().st_size == 0:
        raise _corrupt_checkpoint(path, "the file is empty")
    with open(path, "rb") as handle:
        head = handle.read(16)
    if path.suffix == ".safetensors" or head[8:9] == b"{":
        from safetensors import safe_open

        try:
            with safe_open(str(path), framework="pt") as weights:
                weights.keys()
        except Exception as err:  # noqa: BLE001 - safetensors raises its own error types for damaged files
            raise _corrupt_checkpoint(path, f"safetensors: {str(err).splitlines()[0][:200]}") from None
    elif head[:2] == b"PK":  # torch.save and TorchScript archives are zip files with a CRC per member
        try:
            with zipfile.ZipFile(path) as archive:
                bad = archive.testzip()
        except (zipfile.BadZipFile, OSError, EOFError) as err:
            raise _corrupt_checkpoint(path, f"damaged zip archive: {err}") from None
        if bad is not None:
            raise _corrupt_checkpoint(path, f"member {bad} fails its CRC check")
    elif head[:1] != b"\x80":  # neither zip nor a legacy pickle
        raise _corrupt_checkpoint(path, "unknown file format")


def _build_model(source: _ModelSource, pretrained: str | None, pretrained_path: Path | None, torchscript: bool,
                 quick_gelu: bool, precision: str, device: torch.device, cache_dir: str | None) -> torch.nn.Module:
    """Build the model and load its weights (through open_clip's factory for built-in names and tags)."""
    open_clip = _open_clip()
    if source.config_path is not None or torchscript:
        model = _build_from_config(source.config, quick_gelu, precision)
        if pretrained_path is not None:
            _load_weights(model, pretrained_path)
        if precision != "fp32":  # open_clip's mixed precision: LayerNorms stay float32, as create_model does
            open_clip.model.convert_weights_to_lp(model, dtype=PRECISIONS[precision])
        return model
    try:
        with _quiet_hub():
            return open_clip.create_model(
                source.name, pretrained=str(pretrained_path) if pretrained_path else pretrained,
                force_quick_gelu=quick_gelu, cache_dir=cache_dir, precision=precision, device=device,
                weights_only=True,
            )
    except RuntimeError as err:
        if pretrained_path is None and ("download" in str(err).lower() or "hub" in str(err).lower()):
            raise CalipError(_offline_message(source.name, pretrained or source.name, cache_dir, err)) from None
        raise CalipError(f"could not build {source.name} with weights {pretrained!r}: "
                         f"{str(err).splitlines()[0][:300]}") from None
    except Exception as err:  # noqa: BLE001 - unpickling a damaged file raises many types
        if pretrained_path is None:
            raise
        raise _corrupt_checkpoint(pretrained_path, f"{type(err).__name__}: {str(err).splitlines()[0][:200]}") \
            from None


def _build_from_config(model_cfg: dict[str, Any], quick_gelu: bool, precision: str) -> torch.nn.Module:
    open_clip = _open_clip()
    cfg = {k: v for k, v in model_cfg.items() if k not in ("preprocess_cfg", "custom_text")}
    cfg["quick_gelu"] = quick_gelu
    cls = open_clip.CustomTextCLIP if model_cfg.get("custom_text") or "hf_model_name" in cfg["text_cfg"] \
        else open_clip.CLIP
    try:
        return cls(**cfg, cast_dtype=open_clip.get_cast_dtype(precision))
    except TypeError as err:
        raise CalipError(f"invalid model config: {err}") from None


def _load_weights(model: torch.nn.Module, path: Path) -> None:
    open_clip = _open_clip()
    try:
        if _is_torchscript(path):
            model.load_state_dict(_load_torchscript_state_dict(path))
        else:
            open_clip.load_checkpoint(model, str(path), strict=True, weights_only=True)
    except (RuntimeError, KeyError, ValueError) as err:
        first = str(err).splitlines()[0][:300]
        if "state_dict" in first or "size mismatch" in first or isinstance(err, KeyError):
            raise CalipError(f"checkpoint {path} does not fit this model: {first}") from None
        raise _corrupt_checkpoint(path, first) from None
    except Exception as err:  # noqa: BLE001 - unpickling a damaged file raises many types
        raise _corrupt_checkpoint(path, f"{type(err).__name__}: {str(err).splitlines()[0][:200]}") from None


def _tokenizer_for(name: str, model: torch.nn.Module, model_cfg: dict | None, schema: bool) -> Callable:
    open_clip = _open_clip()
    text_cfg = (model_cfg or {}).get("text_cfg", {})
    if schema or (model_cfg is not None and "hf_tokenizer_name" in text_cfg and not name.endswith(".json")):
        return open_clip.get_tokenizer(name)
    if "hf_tokenizer_name" in text_cfg:
        return open_clip.HFTokenizer(text_cfg["hf_tokenizer_name"], context_length=text_cfg.get("context_length", 77))
    return _default_tokenizer(model)


def _val_transform(model: torch.nn.Module, model_cfg: dict | None) -> Callable:
    """The model's own validation transform (resize shortest side, centre crop, normalise)."""
    from dataclasses import asdict

    from open_clip.transform import PreprocessCfg, image_transform_v2

    cfg = asdict(PreprocessCfg())
    cfg.update(getattr(model.visual, "preprocess_cfg", {}) or {})
    cfg.update((model_cfg or {}).get("preprocess_cfg", {}))
    size = getattr(model.visual, "image_size", cfg["size"])
    cfg["size"] = size
    return image_transform_v2(PreprocessCfg(**cfg), is_train=False)
