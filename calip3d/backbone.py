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
from dataclasses import dataclass, field
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
        return {
            "name": self.name, "pretrained": self.pretrained, "weights": self.weights, "quick_gelu": self.quick_gelu,
            "architecture": self.architecture, "image_size": self.image_size, "embed_dim": self.embed_dim, **self.extra,
        }


class CLIPBackbone(torch.nn.Module):
    """Wraps an open_clip CLIP model: global + spatial image tokens and class text features, all L2-normalised.

    ModifiedResNet towers: the attention pooling is run with every position as a query (HW+1 outputs, as the
    official CALIP code modifies CLIP); output 0 is the global feature (equal to `encode_image`), outputs 1..HW the
    spatial features. ViT towers with a class token: `ln_post` and `proj` are applied to every token; CLS is global.
    """

    def __init__(self, model: torch.nn.Module, tokenizer: Callable | None = None) -> None:
        super().__init__()
        self.model = model.eval()
        self.architecture = check_spatial_support(model)
        self.tokenizer = tokenizer or _default_tokenizer(model)

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

    @torch.no_grad()
    def encode_image(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Images `[B, 3, S, S]` -> (global `[B, D]`, spatial `[B, N, D]`), both L2-normalised per row."""
        images = images.to(device=self.device, dtype=self.dtype)
        tokens = self._resnet_tokens(images) if self.architecture == "resnet" else self._vit_tokens(images)
        tokens = F.normalize(tokens, dim=-1)
        return tokens[:, 0], tokens[:, 1:]

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
        "Either pass a local checkpoint file with --pretrained PATH (.pt/.bin/.safetensors; OpenAI's original .pt files "
        "work too, add --quick-gelu for OpenAI weights), or copy the hub files into that cache on a connected "
        "machine (--cache-dir or HF_HUB_CACHE chooses another location) and set HF_HUB_OFFLINE=1 to skip the network. "
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
    Returns (backbone in eval mode, val transform, info).
    """
    open_clip = _open_clip()
    if precision not in PRECISIONS:
        raise CalipError(f"--precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    device = torch.device(device)
    looks_like_file = pretrained and (Path(pretrained).suffix in CHECKPOINT_SUFFIXES or os.sep in pretrained
                                      or Path(pretrained).is_file())
    pretrained_path = Path(pretrained) if looks_like_file else None
    if pretrained_path is not None and not pretrained_path.is_file():
        raise CalipError(f"checkpoint file not found: {pretrained_path}")

    schema = name.startswith(("hf-hub:", "local-dir:"))
    config_path = Path(name) if name.endswith(".json") else None
    extra: dict[str, Any] = {}
    tag_cfg: dict[str, Any] = {}
    if config_path is not None:
        if not config_path.is_file():
            raise CalipError(f"model config file not found: {config_path}")
        model_cfg = read_model_config(config_path)
        extra["config_sha256"] = sha256_file(config_path)
        if pretrained and pretrained_path is None:
            raise CalipError(
                f"with a model-config JSON ({config_path}), --pretrained must be a checkpoint file; {pretrained!r} "
                "is not one (weights tags belong to built-in model names such as RN50)"
            )
    elif schema:
        model_cfg = None
    else:
        name = name.replace("/", "-")
        model_cfg = open_clip.get_model_config(name)
        if model_cfg is None:
            raise CalipError(
                f"unknown model {name!r}. Known open_clip models include RN50, RN101, RN50x4, RN50x16, ViT-B-32, "
                "ViT-B-16, ViT-L-14 (see open_clip.list_models()); a path to a model-config JSON also works"
            )
        _refuse_unsupported_config(model_cfg, name)
        if pretrained and pretrained_path is None:
            tag_cfg = open_clip.get_pretrained_cfg(name, pretrained) or {}
            if not tag_cfg:
                tags = open_clip.list_pretrained_tags_by_model(name)
                raise CalipError(
                    f"{pretrained!r} is neither a checkpoint file nor a known weights tag for {name} "
                    f"(known tags: {', '.join(tags) or 'none'})"
                )
    torchscript = pretrained_path is not None and _is_torchscript(pretrained_path)
    if quick_gelu is None:
        # OpenAI's TorchScript files are always QuickGELU models, as open_clip's own OpenAI loader assumes
        quick_gelu = torchscript or bool(tag_cfg.get("quick_gelu", False)) \
            or bool((model_cfg or {}).get("quick_gelu", False))
        if pretrained_path is not None and not quick_gelu and "openai" in pretrained_path.name.lower():
            warnings.warn(f"{pretrained_path.name} looks like OpenAI weights, which need QuickGELU: add --quick-gelu "
                          "(without it accuracy drops silently)", stacklevel=2)

    if pretrained_path is not None:
        weights = f"file:{pretrained_path} sha256:{sha256_file(pretrained_path)}"
    elif schema:
        weights = "schema"
    elif pretrained:
        weights = f"tag:{pretrained}"
    else:
        weights = "random"
        warnings.warn(f"no pretrained weights given for {name}: the model has random weights", stacklevel=2)

    if config_path is not None or torchscript:
        model = _build_from_config(model_cfg, quick_gelu, precision)
        if pretrained_path is not None:
            _load_weights(model, pretrained_path)
        if precision != "fp32":  # open_clip's mixed precision: LayerNorms stay float32, as create_model does
            open_clip.model.convert_weights_to_lp(model, dtype=PRECISIONS[precision])
    else:
        try:
            with _quiet_hub():
                model = open_clip.create_model(
                    name, pretrained=str(pretrained_path) if pretrained_path else pretrained,
                    force_quick_gelu=quick_gelu, cache_dir=cache_dir, precision=precision, device=device,
                    weights_only=True,
                )
        except RuntimeError as err:
            if "download" in str(err).lower() or "hub" in str(err).lower():
                raise CalipError(_offline_message(name, pretrained or name, cache_dir, err)) from None
            raise CalipError(f"could not build {name} with weights {pretrained!r}: {err}") from None
    model = model.to(device).eval()
    backbone = CLIPBackbone(model, _tokenizer_for(name, model, model_cfg, schema))
    transform = _val_transform(model, model_cfg)
    info = BackboneInfo(
        name=str(config_path or name), pretrained=pretrained, weights=weights, quick_gelu=quick_gelu,
        architecture=backbone.architecture, image_size=backbone.image_size, embed_dim=backbone.embed_dim, extra=extra,
    )
    return backbone, transform, info


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
    except (RuntimeError, KeyError, ValueError, OSError) as err:
        first = str(err).splitlines()[0][:300]
        raise CalipError(f"checkpoint {path} does not fit this model: {first}") from None


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
