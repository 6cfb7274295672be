import pytest
import torch

from dwlab.app.models import MODELS, ResNet18, StochasticBinaryLinear, build_model, count_parameters


def test_resnet18_cifar_has_the_published_size_and_shape():
    model = build_model("resnet18", in_channels=3, num_classes=10, width=64, image_size=32)
    # The CIFAR ResNet18 (Kuang Liu's layout, used by the SGLD papers) has 11,173,962.
    assert count_parameters(model) == 11_173_962
    assert isinstance(model, ResNet18)
    # 3x3 stem, no max-pool anywhere.
    assert model.conv1.kernel_size == (3, 3) and model.conv1.stride == (1, 1)
    assert not any(isinstance(m, torch.nn.MaxPool2d) for m in model.modules())


def test_resnet18_small_width_on_fashion_images():
    model = build_model("resnet18", in_channels=1, num_classes=10, width=8, image_size=28)
    out = model(torch.randn(3, 1, 28, 28))
    assert out.shape == (3, 10)
    # Widths double per stage: w, 2w, 4w, 8w.
    assert [s[0].conv1.out_channels for s in (model.layer1, model.layer2, model.layer3,
                                             model.layer4)] == [8, 16, 32, 64]


@pytest.mark.parametrize("name,layers", [("fc5", 5), ("mlp", 3)])
def test_flat_networks_have_the_stated_number_of_layers(name, layers):
    model = build_model(name, in_channels=1, num_classes=10, width=32, image_size=8)
    linears = [m for m in model.modules() if isinstance(m, torch.nn.Linear)]
    assert len(linears) == layers
    assert linears[0].in_features == 64 and linears[-1].out_features == 10
    assert model(torch.randn(4, 1, 8, 8)).shape == (4, 10)


def test_stochastic_binary_layer_samples_binary_weights_with_its_probability():
    torch.manual_seed(0)
    layer = StochasticBinaryLinear(4, 2000, bias=False)
    with torch.no_grad():
        layer.weight.fill_(0.5)  # p(+1) = 0.75
    w = layer.sample_weight().detach()
    assert set(w.unique().tolist()) == {-1.0, 1.0}
    assert abs((w > 0).float().mean().item() - 0.75) < 0.02
    # A fresh draw every forward.
    assert not torch.equal(w, layer.sample_weight().detach())
    # Straight-through gradient reaches the probability parameter.
    layer(torch.ones(1, 4)).sum().backward()
    assert layer.weight.grad is not None and layer.weight.grad.abs().sum() > 0
    layer.deterministic = True
    assert torch.allclose(layer.sample_weight(), torch.full((2000, 4), 0.5))


def test_unknown_model_name_lists_the_choices():
    with pytest.raises(ValueError, match="unknown model 'vgg'.*resnet18"):
        build_model("vgg")
    assert set(MODELS) == {"resnet18", "fc5", "mlp", "stochastic_binary"}
