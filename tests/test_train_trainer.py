import math

import pytest
import torch
from torch import nn

from transferlab.data import TensorSplit, load_domain
from transferlab.models import SmallCNN, new_head
from transferlab.train import (
    Callback,
    CheckpointError,
    LossTerm,
    Trainer,
    from_source,
    seed_everything,
)


@pytest.fixture(scope="module")
def small():
    """300 handwritten training images and the validation split."""
    d = load_domain("handwritten")
    return d.train.subset(torch.arange(300)), d.val


def _model(seed=0, **kw):
    seed_everything(seed)
    return SmallCNN(**kw)


def test_training_learns_and_records_a_history(small):
    train, val = small
    trainer = Trainer(_model(), batch_size=32)
    before = trainer.evaluate(val)["acc"]
    history = trainer.fit(train, val, epochs=5)
    assert len(history) == 5 and history["epoch"] == [1, 2, 3, 4, 5]
    assert history["loss"][-1] < history["loss"][0]
    assert history["val_acc"][-1] > max(0.6, before + 0.3)
    fig = history.plot()
    assert len(fig.axes) == 2
    with pytest.raises(KeyError, match="no metric"):
        history["nope"]


def test_resuming_from_a_mid_run_checkpoint_gives_the_same_weights(small, tmp_path):
    train, _ = small
    straight = Trainer(_model(), batch_size=32, seed=7, device="cpu")
    straight.fit(train, epochs=4)

    ckpt = tmp_path / "run.pt"
    first = Trainer(_model(), batch_size=32, seed=7, device="cpu")
    first.fit(train, epochs=2, checkpoint=ckpt)
    torch.manual_seed(123)  # disturb the global RNG: resume must restore it
    resumed = Trainer(
        _model(seed=99), batch_size=32, seed=0, device="cpu"
    )  # other init, other seed
    resumed.fit(train, epochs=4, checkpoint=ckpt, resume=True)

    assert resumed.epoch == 4 and resumed.step == straight.step
    for (name, a), b in zip(
        straight.model.state_dict().items(), resumed.model.state_dict().values()
    ):
        assert torch.equal(a, b), f"{name} differs after resume"
    assert resumed.history["loss"] == straight.history["loss"]


def test_label_outside_range_is_named_before_training(small):
    train, _ = small
    y = train.y.clone()
    y[5] = 10
    with pytest.raises(
        ValueError, match=r"labels must lie in \[0, 10\).*values \[10\] at positions \[5\]"
    ):
        Trainer(_model()).fit(TensorSplit(train.x, y), epochs=1)
    y[5] = -1
    with pytest.raises(ValueError, match="values \\[-1\\]"):
        Trainer(_model()).fit(TensorSplit(train.x, y), epochs=1)


def test_float_labels_are_rejected(small):
    train, _ = small
    with pytest.raises(ValueError, match="integer class indices"):
        Trainer(_model()).fit((train.x, train.y.float()), epochs=1)


def test_input_shape_the_model_cannot_take_is_named(small):
    x = torch.rand(20, 3, 8, 8)  # RGB images for a grey-scale model
    with pytest.raises(ValueError, match=r"cannot take inputs of shape \(3, 8, 8\)"):
        Trainer(_model()).fit((x, torch.zeros(20, dtype=torch.long)), epochs=1)


def test_empty_dataset_is_rejected():
    with pytest.raises(ValueError, match="empty"):
        Trainer(_model()).fit((torch.zeros(0, 1, 8, 8), torch.zeros(0, dtype=torch.long)), epochs=1)


def test_nan_loss_names_the_step(small):
    train, _ = small

    def explodes(step):
        return torch.tensor(float("nan")) if step.step == 2 else torch.zeros(())

    trainer = Trainer(_model(), loss_terms=[explodes], batch_size=32)
    with pytest.raises(FloatingPointError, match=r"nan at epoch 1, batch 3 \(optimiser step 3\)"):
        trainer.fit(train, epochs=1)


def test_huge_learning_rate_ends_in_a_clear_nan_error(small):
    train, _ = small
    trainer = Trainer(_model(), optimizer=lambda p: torch.optim.SGD(p, lr=1e12), batch_size=32)
    with pytest.raises(FloatingPointError, match="Lower the learning rate"):
        trainer.fit(train, epochs=3)


@pytest.mark.parametrize("content", [b"", b"garbage bytes", "truncated"])
def test_corrupt_checkpoint_gives_a_clear_error(small, tmp_path, content):
    train, _ = small
    path = tmp_path / "model.pt"
    trainer = Trainer(_model(), batch_size=64)
    trainer.fit(train, epochs=1, checkpoint=path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2] if content == "truncated" else content)
    with pytest.raises(CheckpointError, match="corrupt.*delete it"):
        Trainer(_model()).load(path)
    with pytest.raises(CheckpointError):
        Trainer(_model()).fit(train, epochs=2, checkpoint=path, resume=True)


def test_checkpoint_of_another_architecture_is_refused(small, tmp_path):
    path = tmp_path / "wide.pt"
    Trainer(_model(width=16)).save(path)
    with pytest.raises(CheckpointError, match="does not fit"):
        Trainer(_model()).load(path)
    with pytest.raises(CheckpointError, match="does not exist"):
        Trainer(_model()).load(tmp_path / "missing.pt")


def test_a_dataset_without_tensors_uses_a_dataloader(small):
    train, val = small
    ds = torch.utils.data.TensorDataset(train.x, train.y)
    trainer = Trainer(_model(), batch_size=50)
    trainer.fit(ds, epochs=2)
    assert trainer.step == 2 * 6
    assert trainer.evaluate(torch.utils.data.TensorDataset(val.x, val.y))["acc"] > 0.3


def test_loss_terms_and_callbacks_are_called_and_logged(small):
    train, _ = small
    seen = {"steps": [], "epochs": []}

    class Term(LossTerm):
        name = "zero"

        def forward(self, step):
            seen["steps"].append((step.step, step.features.shape, step.logits.shape))
            return step.features.sum() * 0, {"calls": 1.0}

    class Start(Callback):
        def on_epoch_start(self, trainer, epoch):
            seen["epochs"].append(epoch)

    h = Trainer(_model(), loss_terms=[Term()], callbacks=[Start()], batch_size=100).fit(
        train, epochs=2
    )
    assert seen["epochs"] == [0, 1] and len(seen["steps"]) == 6
    assert seen["steps"][0][1:] == (torch.Size([100, 128]), torch.Size([100, 10]))
    assert h["zero"] == [0.0, 0.0] and h["zero_calls"] == [1.0, 1.0]


def test_target_model_from_a_source_checkpoint(tmp_path):
    source = _model(num_classes=26)
    path = tmp_path / "source.pt"
    Trainer(source).save(path)
    target = from_source(path, num_classes=10)
    assert target.head.out_features == 10
    for a, b in zip(source.features.parameters(), target.features.parameters()):
        assert torch.equal(a, b)
    copy = new_head(source, 5)
    assert source.head.out_features == 26 and copy.head.out_features == 5
    with pytest.raises(TypeError, match="features"):
        new_head(nn.Linear(3, 3), 2)


def test_device_auto_is_cpu_here_and_amp_is_off_on_cpu():
    trainer = Trainer(_model(), device="cpu")
    assert trainer.device.type == "cpu" and trainer.amp_dtype is None
    assert Trainer(_model()).device.type in ("cpu", "cuda", "mps")


def test_annealed_lr_follows_the_dann_schedule_per_step_and_step_log_records_each_step(small):
    from transferlab.train import AnnealedLR, StepLog

    seed_everything(0)
    lrs = []

    class Spy(Callback):
        def on_step_end(self, trainer, step, parts):
            lrs.append(trainer.optimizer.param_groups[0]["lr"])

    schedule, log = AnnealedLR(), StepLog("ce", "absent")
    trainer = Trainer(
        SmallCNN(),
        lr=0.01,
        optimizer=lambda p: torch.optim.SGD(p, lr=0.01, momentum=0.9),
        callbacks=[schedule, Spy(), log],
        batch_size=32,
    )
    train, _ = small
    trainer.fit(train, max_steps=10)
    assert trainer.total_steps == 10 and log.steps == list(range(10))
    expected = [0.01 / (1 + 10 * s / 10) ** 0.75 for s in range(10)]
    assert lrs == pytest.approx(expected, rel=1e-9)
    assert len(log.values["ce"]) == 10 and all(v > 0 for v in log.values["ce"])
    assert all(math.isnan(v) for v in log.values["absent"])  # NaN where a step has no such part
    with pytest.raises(ValueError, match="names of the parts"):
        StepLog()


def test_a_convolutional_model_trains_channels_last_unless_told_otherwise(small):
    train, val = small
    cnn = Trainer(_model(), batch_size=32, device="cpu", progress=False)
    assert cnn.memory_format == torch.channels_last
    assert cnn.model.features[0].weight.is_contiguous(memory_format=torch.channels_last)
    plain = Trainer(_model(), batch_size=32, device="cpu", channels_last=False, progress=False)
    assert (
        plain.memory_format == torch.contiguous_format
        and plain.model.features[0].weight.is_contiguous()
    )
    assert (
        Trainer(nn.Linear(64, 10), device="cpu", progress=False).memory_format
        == torch.contiguous_format
    )
    for trainer in (cnn, plain):  # the same steps: the layout changes the speed, not what is learnt
        trainer.fit(train, max_steps=20)
    assert cnn.evaluate(val)["acc"] == pytest.approx(plain.evaluate(val)["acc"], abs=0.02)


class _Spy(LossTerm):
    """A loss term that records the dtypes it is given and adds nothing."""

    name = "spy"

    def __init__(self):
        super().__init__()
        self.dtypes = []

    def forward(self, step):
        self.dtypes.append((step.features.dtype, step.logits.dtype))
        return step.logits.sum() * 0.0


@pytest.mark.parametrize("fp32_env", [False, True])
def test_under_cpu_bf16_the_forward_pass_is_bf16_and_every_loss_float32(
    small, monkeypatch, fp32_env
):
    from transferlab.train import device

    monkeypatch.setattr(
        device, "cpu_has_native_bf16", lambda: True
    )  # emulated where the CPU lacks it
    if fp32_env:
        monkeypatch.setenv(device.FP32_ENV, "1")
    train, _ = small
    spy = _Spy()
    trainer = Trainer(
        _model(), batch_size=32, device="cpu", cpu_amp=True, loss_terms=[spy], progress=False
    )
    assert trainer.amp_dtype == (None if fp32_env else torch.bfloat16)
    assert device.arithmetic(device="cpu") == ("cpu-fp32" if fp32_env else "cpu-bf16")
    assert device.arithmetic(amp=False, device="cpu") == "cpu-fp32"
    seen = {}
    hook = trainer.model.head.register_forward_hook(
        lambda m, i, out: seen.update(head=out.dtype)
    )  # returns None
    history = trainer.fit(train, max_steps=3)
    hook.remove()
    assert seen["head"] == (torch.float32 if fp32_env else torch.bfloat16)
    assert spy.dtypes == [(torch.float32, torch.float32)] * 3 and math.isfinite(history["loss"][-1])
