import pytest
import torch
from torch import nn

from poolstudy.errors import InvalidModelError, PoolStudyError
from poolstudy.models import DOWNSAMPLERS, LeNet, create_model
from poolstudy.models.profile import count_macs, count_params, trace_shapes

SEED_MAXPOOL = {"type": "maxpool", "kernel_size": 2, "stride": 2, "padding": 0}
SEED_STRIDED = {"type": "strided", "kernel_size": 5, "stride": 2}
AVGPOOL = {"type": "avgpool", "kernel_size": 2, "stride": 2}


def seed_original(in_channels=1):
    """The seed's original LeNet, written out layer by layer as in ../shared/seed/."""
    return nn.Sequential(
        nn.Conv2d(in_channels, 6, 5, 1, 2), nn.ReLU(), nn.MaxPool2d(2, 2), nn.Dropout(0.4),
        nn.Conv2d(6, 16, 5, 1, 2), nn.BatchNorm2d(16), nn.ReLU(), nn.MaxPool2d(2, 2),
        nn.Conv2d(16, 120, 5), nn.BatchNorm2d(120), nn.ReLU(),
    )


@pytest.mark.parametrize("downsample", [SEED_MAXPOOL, SEED_STRIDED, AVGPOOL])
def test_seed_models_have_52174_parameters_on_mnist(downsample):
    model = LeNet(1, 10, downsample)
    assert count_params(model) == 52_174


def test_maxpool_lenet_matches_the_seed_layer_by_layer():
    torch.manual_seed(0)
    ours = LeNet(1, 10, SEED_MAXPOOL).eval()
    seed = seed_original().eval()
    seed_params = [p for p in seed.parameters()]
    ours_params = [p for n, p in ours.named_parameters() if not n.startswith("fc")]
    assert [p.shape for p in seed_params] == [p.shape for p in ours_params]
    with torch.no_grad():
        for s, o in zip(seed_params, ours_params):
            s.copy_(o)
    x = torch.randn(4, 1, 28, 28)
    features = seed(x)
    expected = ours.fc(features.mean((2, 3)))
    assert torch.allclose(ours(x), expected, atol=1e-6)


def test_strided_lenet_is_the_seeds_modified_model():
    model = LeNet(1, 10, SEED_STRIDED)
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    assert [(c.kernel_size, c.stride, c.padding) for c in convs] == [
        ((5, 5), (2, 2), (2, 2)), ((5, 5), (2, 2), (2, 2)), ((5, 5), (1, 1), (0, 0))]
    assert not any(isinstance(m, (nn.MaxPool2d, nn.AvgPool2d)) for m in model.modules())
    assert sum(isinstance(m, nn.Dropout) for m in model.modules()) == 1


@pytest.mark.parametrize("downsample", [SEED_MAXPOOL, SEED_STRIDED, AVGPOOL])
@pytest.mark.parametrize("channels,size,classes", [(1, 28, 10), (3, 32, 10), (3, 32, 100)])
def test_output_shapes(downsample, channels, size, classes):
    model = LeNet(channels, classes, downsample)
    out = model(torch.randn(3, channels, size, size))
    assert out.shape == (3, classes)
    rows = trace_shapes(model, (channels, size, size))
    maps = {r.name: r.out_shape for r in rows}
    spatial = 3 if size == 28 else 4
    assert maps["conv3.2"] == (120, spatial, spatial)


def test_three_channel_params_add_only_first_conv_weights():
    assert count_params(LeNet(3, 10, SEED_MAXPOOL)) - count_params(LeNet(1, 10, SEED_MAXPOOL)) == 2 * 6 * 25


def test_dropout_zero_removes_the_layer():
    model = LeNet(1, 10, SEED_MAXPOOL, dropout=0.0)
    assert not any(isinstance(m, nn.Dropout) for m in model.modules())


def test_macs_of_the_seed_maxpool_lenet():
    # conv1 28*28*6*25 + conv2 14*14*16*6*25 + conv3 3*3*120*16*25 + fc 120*10
    expected = 28 * 28 * 6 * 25 + 14 * 14 * 16 * 6 * 25 + 3 * 3 * 120 * 16 * 25 + 120 * 10
    assert count_macs(LeNet(1, 10, SEED_MAXPOOL), (1, 28, 28)) == expected


def test_strided_costs_a_quarter_of_the_first_two_convolutions():
    expected = 14 * 14 * 6 * 25 + 7 * 7 * 16 * 6 * 25 + 3 * 3 * 120 * 16 * 25 + 120 * 10
    assert count_macs(LeNet(1, 10, SEED_STRIDED), (1, 28, 28)) == expected


def test_registry_lists_operators_and_rejects_unknown():
    assert {"maxpool", "avgpool", "strided"} <= set(DOWNSAMPLERS)
    with pytest.raises(PoolStudyError, match=r"model.downsample.type = 'bogus'.*valid types are:.*maxpool"):
        LeNet(1, 10, {"type": "bogus"})


@pytest.mark.parametrize("key,value", [("stride", 0), ("kernel_size", -1), ("stride", 1.5), ("padding", -1)])
def test_registry_rejects_bad_numbers(key, value):
    with pytest.raises(PoolStudyError, match=f"model.downsample.{key}"):
        LeNet(1, 10, {**SEED_MAXPOOL, key: value})


def test_impossible_shape_is_reported_before_training():
    model = LeNet(1, 10, {"type": "maxpool", "kernel_size": 5, "stride": 5})
    with pytest.raises(InvalidModelError, match=r"layer 'conv3.0' \(Conv2d: kernel_size=\(5, 5\).*gets a 16x1x1 input"):
        trace_shapes(model, (1, 28, 28))


def test_create_model_errors_name_the_key():
    with pytest.raises(PoolStudyError, match="model.arch = 'bogus' is not a known architecture; valid choices are: "
                                             "allcnn_c, lenet, resnet, torchvision, vgg"):
        create_model("bogus", in_channels=1, num_classes=10, downsample=SEED_MAXPOOL)
    with pytest.raises(PoolStudyError, match="does not fit architecture 'lenet'"):
        create_model("lenet", in_channels=1, num_classes=10, downsample=SEED_MAXPOOL, depth=3)


def test_fast_cpu_dropout_keeps_torch_dropouts_distribution_and_gradient():
    from poolstudy.models.fast_cpu import FastCPUDropout

    torch.manual_seed(0)
    layer = FastCPUDropout(0.4)
    x = torch.rand(400, 500) + 0.5  # no zeros, so a zero output means "dropped"
    x.requires_grad_(True)
    y = layer(x)
    kept = y != 0
    # 200,000 Bernoulli(0.6) draws: the kept fraction is within 0.005 of 0.6 (over 4.5 standard deviations)
    assert abs(kept.float().mean().item() - 0.6) < 0.005
    assert torch.allclose(y[kept], x[kept] / 0.6)
    y.sum().backward()
    assert torch.allclose(x.grad, kept.float() / 0.6)
    assert torch.equal(layer.eval()(x), x)  # evaluation: identity, as nn.Dropout
    assert isinstance(layer, torch.nn.Dropout) and repr(layer) == "FastCPUDropout(p=0.4, inplace=False)"
    assert torch.equal(FastCPUDropout(0.0)(x), x) and not FastCPUDropout(1.0)(x).any()


def test_lenet_dropout_is_the_fast_cpu_one():
    from poolstudy.models.fast_cpu import FastCPUDropout

    net = LeNet(1, 10, {"type": "maxpool", "kernel_size": 2, "stride": 2})
    dropouts = [m for m in net.modules() if isinstance(m, torch.nn.Dropout)]
    assert len(dropouts) == 1 and type(dropouts[0]) is FastCPUDropout and dropouts[0].p == 0.4


@pytest.mark.parametrize("channels_last", [False, True])
@pytest.mark.parametrize("shape", [(64, 6, 28, 28), (5, 16, 16, 16), (3, 2, 7, 9), (2, 3, 2, 3)])
def test_fast_cpu_max_pool_matches_torch_exactly_without_gradients(shape, channels_last):
    from poolstudy.models.fast_cpu import FastCPUMaxPool2d

    torch.manual_seed(0)
    layer = FastCPUMaxPool2d(2, 2)
    ties = torch.randint(-2, 3, shape).float().relu()  # mostly equal values: the first one must win
    signed_zeros = torch.where(torch.rand(shape) < 0.5, -0.0, 0.0)
    nans = torch.randn(shape).masked_fill(torch.rand(shape) < 0.05, float("nan"))
    for x in (torch.randn(shape), ties, signed_zeros, nans):
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        with torch.no_grad():
            ours, reference = layer(x), torch.nn.functional.max_pool2d(x, 2, 2)
        # exactly equal floats (a zero maximum may differ in sign only) and NaN in the same places
        torch.testing.assert_close(ours, reference, rtol=0, atol=0, equal_nan=True)


def test_fast_cpu_max_pool_trains_with_torchs_kernel_and_keeps_other_windows():
    from poolstudy.models.fast_cpu import FastCPUMaxPool2d

    torch.manual_seed(0)
    x = torch.randint(0, 3, (2, 4, 8, 8)).float().requires_grad_(True)
    FastCPUMaxPool2d(2, 2)(x).sum().backward()
    ours = x.grad.clone()
    x.grad = None
    torch.nn.functional.max_pool2d(x, 2, 2).sum().backward()
    assert torch.equal(ours, x.grad)  # ties: the gradient goes to the first maximum, as torch's
    assert ours.sum() == 2 * 4 * 4 * 4
    for args in [(3, 2), (2, 1), (2, 2, 1), (3, 2, 1)]:
        y = torch.randn(2, 3, 9, 9)
        with torch.no_grad():
            assert torch.equal(FastCPUMaxPool2d(*args)(y), torch.nn.functional.max_pool2d(y, *args))
    assert isinstance(FastCPUMaxPool2d(2, 2), torch.nn.MaxPool2d)
    with torch.no_grad(), pytest.raises(RuntimeError, match="Output size is too small"):
        FastCPUMaxPool2d(2, 2)(torch.randn(1, 1, 1, 5))  # torch's own error for a too-small map


def test_maxpool_lenet_evaluates_exactly_like_the_seeds_torch_layers():
    from poolstudy.models.fast_cpu import FastCPUMaxPool2d

    torch.manual_seed(0)
    ours = LeNet(1, 10, SEED_MAXPOOL).eval().to(memory_format=torch.channels_last)
    pools = [m for m in ours.modules() if isinstance(m, torch.nn.MaxPool2d)]
    assert len(pools) == 2 and all(type(p) is FastCPUMaxPool2d for p in pools)
    x = torch.randn(64, 1, 28, 28)
    with torch.inference_mode():
        fast = ours(x)
        for stage in (ours.conv1, ours.conv2):
            for i, layer in enumerate(stage):
                if isinstance(layer, FastCPUMaxPool2d):
                    stage[i] = torch.nn.MaxPool2d(2, 2)
        assert torch.equal(fast, ours(x))


@pytest.mark.parametrize("channels_last", [False, True])
@pytest.mark.parametrize("shape", [(64, 120, 4, 4), (64, 120, 3, 3), (7, 5, 6, 7), (16, 10, 1, 1)])
def test_global_mean_is_torchs_mean_forward_and_backward(shape, channels_last):
    from poolstudy.models.fast_cpu import global_mean

    torch.manual_seed(0)
    x = torch.randn(shape)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    ours, torchs = x.clone().requires_grad_(), x.clone().requires_grad_()
    grad = torch.randn(shape[:2])
    y_ours, y_torch = global_mean(ours.relu()), torchs.relu().mean(dim=(2, 3))
    y_ours.backward(grad)
    y_torch.backward(grad)
    assert torch.equal(y_ours, y_torch)
    assert torch.equal(ours.grad, torchs.grad)


def test_lenet_trains_exactly_as_with_torchs_mean():
    """Ten channels-last training steps with global_mean and with x.mean(dim=(2, 3)) end in
    the same weights (the seed's model as the studies ran it)."""
    weights = []
    for use_torch_mean in (False, True):
        torch.manual_seed(0)
        model = LeNet(3, 10, SEED_MAXPOOL).to(memory_format=torch.channels_last)
        if use_torch_mean:
            model.forward = lambda x, m=model: m.fc(m.conv3(m.conv2(m.conv1(x))).mean(dim=(2, 3)))
        optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
        data = torch.Generator().manual_seed(1)
        for _ in range(10):
            x, y = torch.randn(32, 3, 32, 32, generator=data), torch.randint(0, 10, (32,), generator=data)
            optimizer.zero_grad()
            torch.nn.functional.cross_entropy(model(x), y).backward()
            optimizer.step()
        weights.append([p.detach().clone() for p in model.parameters()])
    assert all(torch.equal(a, b) for a, b in zip(*weights))


# ---------------------------------------------------------------- dropout position (issue 21) ----------

class SeedLeNetBeforeDropoutPosition(nn.Module):
    """LeNet exactly as poolstudy built it before model.dropout_position existed (commit 2394720): the
    reference the default must stay bit-identical to, so that committed records re-run from their snapshots."""

    def __init__(self, in_channels, num_classes, downsample, dropout=0.4):
        super().__init__()
        from poolstudy.models.downsample import conv_stage, create_downsample

        ds = create_downsample(downsample)
        self.conv1 = conv_stage(in_channels, 6, 5, 2, ds, norm=False, dropout=dropout)
        self.conv2 = conv_stage(6, 16, 5, 2, ds, norm=True)
        self.conv3 = nn.Sequential(nn.Conv2d(16, 120, 5), nn.BatchNorm2d(120), nn.ReLU())
        self.fc = nn.Linear(120, num_classes)

    def forward(self, x):
        from poolstudy.models.fast_cpu import global_mean

        return self.fc(global_mean(self.conv3(self.conv2(self.conv1(x)))))


@pytest.mark.parametrize("downsample", [SEED_MAXPOOL, SEED_STRIDED])
@pytest.mark.parametrize("kwargs", [{}, {"dropout_position": "before_bn"}])
def test_default_dropout_position_is_bit_identical_to_the_previous_model(downsample, kwargs):
    torch.manual_seed(0)
    old = SeedLeNetBeforeDropoutPosition(3, 10, downsample)
    torch.manual_seed(0)
    new = LeNet(3, 10, downsample, **kwargs)
    assert list(new.state_dict()) == list(old.state_dict())
    assert [type(m) for m in new.modules()][1:] == [type(m) for m in old.modules()][1:]
    for (name, a), b in zip(new.state_dict().items(), old.state_dict().values()):
        assert torch.equal(a, b), name  # same initial weights from the same seed
    x = torch.randn(8, 3, 32, 32)
    for mode in ("train", "eval"):
        torch.manual_seed(1)  # training mode: the same dropout masks from the same random stream
        out_new = getattr(new, mode)()(x)
        torch.manual_seed(1)
        out_old = getattr(old, mode)()(x)
        assert torch.equal(out_new, out_old), mode


@pytest.mark.parametrize("downsample", [SEED_MAXPOOL, SEED_STRIDED, AVGPOOL])
def test_dropout_after_bn_keeps_shapes_parameters_and_macs(downsample):
    before, after = LeNet(1, 10, downsample), LeNet(1, 10, downsample, dropout_position="after_bn")
    assert count_params(after) == count_params(before) == 52_174
    assert count_macs(after, (1, 28, 28)) == count_macs(before, (1, 28, 28))
    assert list(after.state_dict()) == list(before.state_dict())
    assert after(torch.randn(5, 1, 28, 28)).shape == (5, 10)
    dropouts = [(n, m.p) for n, m in after.named_modules() if isinstance(m, nn.Dropout)]
    assert dropouts == [("head_dropout", 0.4)]
    assert not any(isinstance(m, nn.Dropout) for m in LeNet(1, 10, downsample, dropout=0.0,
                                                            dropout_position="after_bn").modules())


def _bn_inputs(model, x, seed):
    """The input of every BatchNorm layer in one training-mode forward pass, and the output."""
    seen = []
    handles = [m.register_forward_pre_hook(lambda _m, inp: seen.append(inp[0].detach().clone()))
               for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    torch.manual_seed(seed)
    out = model.train()(x)
    for h in handles:
        h.remove()
    return seen, out.detach()


@pytest.mark.parametrize("downsample", [SEED_MAXPOOL, SEED_STRIDED])
def test_no_batchnorm_input_passes_through_dropout_after_bn(downsample):
    torch.manual_seed(0)
    x = torch.randn(16, 1, 28, 28)
    after = LeNet(1, 10, downsample, dropout_position="after_bn")
    (bn2_a, bn3_a), out_a = _bn_inputs(after, x, seed=1)
    (bn2_b, bn3_b), out_b = _bn_inputs(after, x, seed=2)
    # different dropout masks change the output but not a single value any BatchNorm sees
    assert torch.equal(bn2_a, bn2_b) and torch.equal(bn3_a, bn3_b) and not torch.equal(out_a, out_b)
    before = LeNet(1, 10, downsample)  # the seed's placement: both BatchNorms see the dropout
    (bn2_a, bn3_a), _ = _bn_inputs(before, x, seed=1)
    (bn2_b, bn3_b), _ = _bn_inputs(before, x, seed=2)
    assert not torch.equal(bn2_a, bn2_b) and not torch.equal(bn3_a, bn3_b)


def test_dropout_position_is_checked_and_reaches_the_model_from_the_config():
    from hydra.utils import instantiate

    from helpers import compose

    with pytest.raises(PoolStudyError, match=r"model.dropout_position = 'middle' is not valid.*before_bn, after_bn"):
        LeNet(1, 10, SEED_MAXPOOL, dropout_position="middle")
    cfg = compose(["model=strided", "model.dropout_position=after_bn"])
    model = instantiate(cfg.model, _convert_="all", in_channels=1, num_classes=10)
    assert [n for n, m in model.named_modules() if isinstance(m, nn.Dropout)] == ["head_dropout"]
    default = compose([])
    assert default.model.dropout_position == "before_bn"
