"""Pretrained torchvision backbones, tested without the network (page "Scaling up: pretrained
ImageNet networks").

The "pretrained" weights are randomly initialised ones, saved under the file name torchvision
expects in a temporary ``$TORCH_HOME/hub/checkpoints``; they load through the same
``weights=ResNet18_Weights.IMAGENET1K_V1`` path a user takes.  torch.hub checks the SHA-256 prefix
in that file name only when it *downloads* the file (``check_hash`` is applied to downloads); a
file already in the cache is loaded as it is, which is why these stand-ins load (the test checks
that their hash does not match the name, so nothing else was faked).
"""

import hashlib
import os
import re
import subprocess
import time
import urllib.error
import warnings
from pathlib import Path

import pytest
import torch
import torchvision
from torch import nn

from transferlab.data import FolderSplit, TensorSplit, TransformedSplit, load_domain, load_folder
from transferlab.finetune import L2SP, discriminative_lr_groups, linear_probe
from transferlab.models import WeightsUnavailableError, pretrained_backbone, split
from transferlab.models.backbones import checkpoint_path, looks_unnormalised
from transferlab.peft import add_adapters, apply_lora, count_parameters
from transferlab.train import Callback, Trainer, batches, train_mode

ROOT = Path(__file__).parents[1]
PAGE = ROOT / "book" / "pretrained.md"
SCRIPT_DEMO = (
    ".venv/bin/python examples/finetune_pretrained.py --demo --weights none --size 64 --epochs 2"
)
IMAGENET_MEAN, IMAGENET_STD = [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]


@pytest.fixture(autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the machine is shared; these models are small at 64 px
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def torch_home(tmp_path, monkeypatch):
    """An empty ``TORCH_HOME``, and a download function that fails as it does offline (so the
    tests never reach the network, whether or not the machine has one)."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setattr(torch.hub, "_hub_dir", None)

    def offline(url, *args, **kwargs):
        raise urllib.error.URLError(f"no network (test) for {url}")

    monkeypatch.setattr(torch.hub, "download_url_to_file", offline)
    return tmp_path / "torch"


def _stand_in_weights(arch: str, weights) -> dict[str, torch.Tensor]:
    """Randomly initialised ImageNet-shaped weights saved where torch.hub looks for ``weights``."""
    torch.manual_seed(1)
    state = torchvision.models.get_model(arch, weights=None).state_dict()
    path = checkpoint_path(weights)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(state, path)
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    assert not digest.startswith(
        re.search(r"-([a-f0-9]+)\.", path.name).group(1)
    )  # a stand-in, not the real file
    return state


@pytest.fixture
def resnet18_weights(torch_home):
    w = torchvision.models.ResNet18_Weights.IMAGENET1K_V1
    return w, _stand_in_weights("resnet18", w)


def _write_folder(root: Path, per_class: int = 6, size: int = 32) -> Path:
    from PIL import Image

    g = torch.Generator().manual_seed(0)
    for c, name in enumerate(("cold", "warm")):
        (root / name).mkdir(parents=True)
        tint = torch.tensor([0.2, 0.3, 0.8] if c == 0 else [0.8, 0.3, 0.2]).view(3, 1, 1)
        for i in range(per_class):
            x = (tint + 0.2 * torch.randn(3, size, size, generator=g)).clamp(0, 1)
            Image.fromarray((x.permute(1, 2, 0) * 255).to(torch.uint8).numpy()).save(
                root / name / f"{i}.png"
            )
    return root


@pytest.fixture
def folder(tmp_path):
    return _write_folder(tmp_path / "images")


# ------------------------------------------------------------------ weights through weights=
def test_weights_load_from_torch_home_through_the_weights_enum(resnet18_weights):
    weights, state = resnet18_weights
    user = torchvision.models.resnet18(weights=weights)  # what a user writes; no download
    assert torch.equal(user.conv1.weight, state["conv1.weight"])
    model = pretrained_backbone("resnet18", num_classes=2, weights="IMAGENET1K_V1")
    assert model.weights is weights and split(model) == (model.features, model.head)
    assert torch.equal(model.features.conv1.weight, state["conv1.weight"])
    assert torch.equal(model.features.layer4[1].bn2.running_var, state["layer4.1.bn2.running_var"])
    assert model.head.weight.shape == (2, 512) and model.feature_dim == 512
    model.eval()
    x = torch.randn(2, 3, 224, 224)
    assert model.features(x).shape == (2, 512) and model(x).shape == (2, 2)
    # h is the network up to the pooled features: the same numbers as torchvision's own forward
    user.fc = nn.Identity()
    torch.testing.assert_close(model.features(x), user.eval()(x))


def test_mobilenet_v3_small_keeps_its_pretrained_pre_logits(torch_home):
    weights = torchvision.models.MobileNet_V3_Small_Weights.IMAGENET1K_V1
    state = _stand_in_weights("mobilenet_v3_small", weights)
    model = pretrained_backbone("mobilenet_v3_small", 5, weights).eval()
    assert torch.equal(model.features.pre_logits[0].weight, state["classifier.0.weight"])
    assert model.head.weight.shape == (5, 1024)
    assert model(torch.randn(2, 3, 224, 224)).shape == (2, 5)


def test_missing_weights_offline_fail_fast_naming_the_offline_alternatives(torch_home):
    started = time.perf_counter()
    with pytest.raises(
        WeightsUnavailableError, match=r"resnet18-f37072fd\.pth.*weights=None.*pretrained_source"
    ):
        pretrained_backbone("resnet18", 10)
    assert time.perf_counter() - started < 10
    with pytest.raises(ValueError, match="IMAGENET1K_V1"):
        pretrained_backbone("resnet18", 10, weights="IMAGENET22K")


def test_random_initialisation_needs_no_file(torch_home):
    model = pretrained_backbone("resnet18", 3, weights=None)
    assert model.weights is None and not (torch_home / "hub").exists()


# ------------------------------------------------------------------ preprocessing
@pytest.mark.parametrize("arch", ["resnet18", "mobilenet_v3_small"])
def test_transforms_are_the_preprocessing_of_the_weights(arch):
    model = pretrained_backbone(arch, 2, weights=None)
    t = model.transforms()
    assert (t.resize_size, t.crop_size) == ([256], [224])
    assert t.mean == IMAGENET_MEAN and t.std == IMAGENET_STD
    image = torch.full((3, 32, 32), 0.5)
    out = t(image)
    assert out.shape == (3, 224, 224)
    torch.testing.assert_close(
        out.mean((1, 2)), (0.5 - torch.tensor(IMAGENET_MEAN)) / torch.tensor(IMAGENET_STD)
    )
    small = pretrained_backbone(arch, 2, weights=None, input_size=64)
    assert small.transforms().crop_size == [64] and small.transforms().resize_size == [73]
    augmented = small.transforms(train=True)(torch.randint(0, 256, (3, 40, 50), dtype=torch.uint8))
    assert (
        augmented.shape == (3, 64, 64)
        and augmented.dtype == torch.float32
        and bool((augmented < 0).any())
    )


def test_wrong_preprocessing_is_warned_about_once(resnet18_weights):
    model = pretrained_backbone("resnet18", 2, "IMAGENET1K_V1").eval()
    with torch.no_grad():
        with pytest.warns(UserWarning, match="raw pixels"):
            model(torch.rand(2, 3, 224, 224))  # [0, 1] pixels, not normalised
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            model(torch.rand(2, 3, 224, 224))  # once is enough
    model = pretrained_backbone("resnet18", 2, "IMAGENET1K_V1").eval()
    with torch.no_grad(), pytest.warns(UserWarning, match="32×32, smaller than the 224×224"):
        model(torch.randn(2, 3, 32, 32))  # normalised, but CIFAR's size (source article 002)
    model = pretrained_backbone("resnet18", 2, "IMAGENET1K_V1").eval()
    good = model.transforms()(torch.rand(2, 3, 256, 256))
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("error")
        model(good)
    assert looks_unnormalised(255 * torch.rand(2, 3, 224, 224), 224) is not None
    assert "far from" in looks_unnormalised(torch.randn(2, 3, 224, 224) * 0.01, 224)


# ------------------------------------------------------------------ data
def test_an_image_folder_is_a_domain_with_fixed_seeded_stratified_splits(folder):
    a, b = load_folder(folder, seed=0), load_folder(folder, seed=0)
    assert a.classes == ["cold", "warm"] and a.input_shape == (3, 32, 32)
    assert (len(a.train), len(a.val), len(a.test)) == (8, 2, 2)
    assert isinstance(a.train, TensorSplit) and torch.equal(a.train.x, b.train.x)
    assert a.val.y.tolist().count(0) == 1 and a.test.y.tolist().count(1) == 1
    c = load_folder(folder, seed=1)
    assert not torch.equal(a.val.x, c.val.x)
    streamed = load_folder(folder, seed=0, in_memory=False)
    assert isinstance(streamed.train, FolderSplit) and torch.equal(streamed.train.y, a.train.y)
    torch.testing.assert_close(streamed.val[0][0], a.val.x[0])
    # streamed images reach the Trainer through a DataLoader, here with a worker process
    (whole,) = batches(streamed.val, 2, shuffle=False, num_workers=1)
    torch.testing.assert_close(whole.x, a.val.x)
    assert len(streamed.train.few_shot(2, seed=0)) == 4
    with pytest.raises(ValueError, match="positive number of samples per class"):
        streamed.train.few_shot(0)
    with pytest.raises(FileNotFoundError, match="ImageFolder"):
        load_folder(folder / "missing")


def test_online_domains_get_the_backbones_transform(tmp_path, mnist_files):
    mnist_files(tmp_path, 20, 4)
    model = pretrained_backbone("resnet18", 10, weights=None)
    d = load_domain("mnist", root=tmp_path, transform=model.transforms())
    assert isinstance(d.train, TransformedSplit) and d.input_shape == (3, 224, 224)
    x, y = d.test[0]
    assert x.shape == (3, 224, 224) and int(y) == 0 and bool((x < 0).any())


# ------------------------------------------------------------------ training
def test_fine_tuning_a_loaded_backbone_on_an_image_folder_lowers_the_loss(resnet18_weights, folder):
    torch.manual_seed(0)
    model = pretrained_backbone("resnet18", 2, "IMAGENET1K_V1", input_size=64)
    domain = load_folder(folder, model.transforms(), in_memory=False)
    assert domain.input_shape == (3, 64, 64) and domain.num_classes == 2
    x, _ = domain.train[0]
    assert bool((x < 0).any()) and x.abs().max() < 5  # normalised with ImageNet's mean/std
    warnings.simplefilter(
        "error"
    )  # and the backbone finds nothing wrong with it (64 px is asked for)
    losses = []

    class Record(Callback):
        def on_step_end(self, trainer, step, parts):
            losses.append(float(parts["loss"]))

    trainer = Trainer(
        model,
        lr=1e-3,
        params=discriminative_lr_groups(model, 1e-3),
        batch_size=4,
        device="cpu",
        seed=0,
        callbacks=[Record()],
    )
    history = trainer.fit(domain.train, domain.val, max_steps=8)
    assert trainer.step == 8 and len(history) == 4
    assert sum(losses[-2:]) < sum(losses[:2])
    assert all(v > 0 for v in history["images_per_s"])
    assert trainer.predict(domain.test).shape == (2, 2)


def test_a_linear_probe_keeps_the_batchnorm_statistics(folder):
    model = pretrained_backbone("resnet18", 2, weights=None, input_size=64)
    domain = load_folder(folder, model.transforms())
    before = {n: b.clone() for n, b in model.named_buffers()}
    head_before = model.head.weight.detach().clone()
    linear_probe(model)
    assert train_mode(model).features.bn1.training is False and model.head.training
    Trainer(model, lr=1e-2, batch_size=4, device="cpu").fit(domain.train, max_steps=2)
    assert all(torch.equal(b, before[n]) for n, b in model.named_buffers())
    assert not torch.equal(model.head.weight, head_before)
    # full fine-tuning: BatchNorm trains (and updates its running statistics) as usual
    model.requires_grad_(True)
    Trainer(model, lr=1e-3, batch_size=4, device="cpu").fit(domain.train, max_steps=1)
    assert not torch.equal(model.features.bn1.running_mean, before["features.bn1.running_mean"])


def test_the_course_methods_apply_to_a_torchvision_backbone(folder):
    from transferlab.adapt.losses import make_term

    torch.manual_seed(0)
    model = pretrained_backbone("resnet18", 2, weights=None, input_size=64)
    domain = load_folder(folder, model.transforms())
    groups = discriminative_lr_groups(model, 1e-3, decay=0.5)
    assert sum(len(g["params"]) for g in groups) == len(list(model.parameters()))
    assert groups[-1]["lr"] == 1e-3 and groups[0]["lr"] == pytest.approx(1e-3 * 0.5**6)
    terms = [L2SP(model, alpha=0.01), make_term("mmd", model.feature_dim, weight=0.1)]
    history = Trainer(model, batch_size=4, device="cpu", loss_terms=terms, channels_last=True).fit(
        domain.train, unlabelled=domain.val.x, max_steps=2
    )
    assert {"l2sp", "mmd"} <= set(history.keys())
    lora = apply_lora(
        pretrained_backbone("resnet18", 2, weights=None),
        ["features.layer4.1.conv2"],
        r=4,
        modules_to_save=("head",),
    )
    assert 0 < count_parameters(lora).trainable < 0.01 * count_parameters(lora).total
    mobile = apply_lora(
        pretrained_backbone("mobilenet_v3_small", 2, weights=None), ["features.pre_logits.0"], r=4
    )
    adapted = add_adapters(
        mobile, ["features.flatten"], bottleneck=8, dim=576, modules_to_save=("head",)
    )
    Trainer(adapted, batch_size=4, device="cpu").fit(domain.train, max_steps=1)


def test_the_trainer_reports_images_per_second():
    from transferlab.models import SmallCNN

    x, y = torch.rand(64, 1, 8, 8), torch.arange(64) % 10
    history = Trainer(SmallCNN(), batch_size=32, device="cpu").fit((x, y), epochs=2)
    assert len(history["images_per_s"]) == 2 and min(history["images_per_s"]) > 0
    assert Trainer(SmallCNN(), device="cpu", amp=True).amp_dtype is None  # float32 on the CPU


# ------------------------------------------------------------------ the page's commands
def _commands() -> list[str]:
    text = PAGE.read_text()
    found = [
        ln.strip()
        for block in re.findall(r"```bash\n(.*?)```", text, flags=re.DOTALL)
        for ln in block.splitlines()
    ]
    return [c for c in found if c and not c.startswith("#")]


def _run(command: str, tmp_path: Path) -> subprocess.CompletedProcess:
    # an empty torch hub and a proxy that refuses connections: the offline path, network or not
    env = dict(
        os.environ,
        TRANSFERLAB_QUIET="1",
        TORCH_HOME=str(tmp_path / "torch"),
        OMP_NUM_THREADS="1",
        https_proxy="http://127.0.0.1:9",
        HTTPS_PROXY="http://127.0.0.1:9",
        PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
    )
    env.pop("no_proxy", None)
    env.pop("NO_PROXY", None)
    return subprocess.run(
        command,
        shell=True,
        cwd=ROOT,
        capture_output=True,
        text=True,
        env=env,
        timeout=240,
        check=False,
    )


def test_the_pages_commands_run_as_written_on_their_offline_path(tmp_path):
    commands = _commands()
    assert SCRIPT_DEMO in commands and len(commands) >= 3
    for command in commands:
        assert command.startswith(".venv/bin/python examples/finetune_pretrained.py"), command
        done = _run(command, tmp_path)
        if "--weights none" in command:
            assert done.returncode == 0, f"{command}\n{done.stdout[-2000:]}\n{done.stderr[-3000:]}"
            assert re.search(
                r"resnet18 \(random init\) on demo .* val acc [\d.]+ after 2 epochs, \d+ images/s",
                done.stdout,
            ), done.stdout
        else:  # needs the ImageNet weights: fails at once, naming the offline alternative
            assert done.returncode == 2, f"{command}\n{done.stdout[-2000:]}\n{done.stderr[-3000:]}"
            assert "Offline, run the same command with --weights none" in done.stderr
