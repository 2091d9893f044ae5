"""transferlab.train.callbacks and transferlab.train.terms: the declared bases of what plugs
into the Trainer (issue "Contract v3")."""

import pytest
import torch

from transferlab.adapt.losses import AdaptTerm
from transferlab.models import SmallCNN
from transferlab.multitask import StaticWeights
from transferlab.train import Callback, FunctionTerm, LossTerm, Trainer
from transferlab.train.callbacks import HOOKS


def _data():
    g = torch.Generator().manual_seed(0)
    return torch.rand(128, 1, 8, 8, generator=g), torch.randint(10, (128,), generator=g)


def test_a_misspelt_hook_is_refused_when_the_callback_is_given_to_the_trainer():
    class Late(Callback):
        def on_epoch_ends(self, trainer, epoch, record):  # one letter too many: never called
            pass

    with pytest.raises(ValueError, match=r"'on_epoch_ends' \(did you mean 'on_epoch_end'\?\)"):
        Trainer(SmallCNN(), callbacks=[Late()], progress=False)


def test_a_callback_must_derive_from_the_base_and_every_hook_runs():
    class Duck:
        def on_epoch_end(self, trainer, epoch, record):
            pass

    with pytest.raises(TypeError, match="must subclass transferlab.train.Callback"):
        Trainer(SmallCNN(), callbacks=[Duck()], progress=False)

    class All(Callback):
        def __init__(self):
            self.calls = []

        def on_epoch_start(self, trainer, epoch):
            self.calls.append("on_epoch_start")

        def on_step_start(self, trainer, step):
            self.calls.append("on_step_start")

        def on_step_end(self, trainer, step, parts):
            self.calls.append("on_step_end")

        def on_epoch_end(self, trainer, epoch, record):
            self.calls.append("on_epoch_end")

    cb = All()
    Trainer(SmallCNN(), callbacks=[cb], batch_size=64, progress=False).fit(_data(), epochs=1)
    assert cb.calls == list(HOOKS[:1]) + list(HOOKS[1:3]) * 2 + list(HOOKS[3:])


def test_loss_terms_are_loss_term_objects_or_plain_functions():
    class Settings:  # a callable object whose settings the Trainer would never read
        replaces_supervised = True

        def __call__(self, step):
            return step.logits.sum() * 0

    with pytest.raises(TypeError, match="must subclass transferlab.train.LossTerm"):
        Trainer(SmallCNN(), loss_terms=[Settings()], progress=False)

    def zero(step):
        return step.logits.sum() * 0

    trainer = Trainer(SmallCNN(), loss_terms=[zero], progress=False)
    assert isinstance(trainer.loss_terms[0], FunctionTerm) and trainer.loss_terms[0].name == "zero"
    history = trainer.fit(_data(), epochs=1)
    assert history["zero"] == [0.0]


def test_a_term_is_named_after_its_class_unless_it_says_otherwise_and_states_save_by_name(
    tmp_path,
):
    class Nameless(LossTerm):
        def forward(self, step):
            return step.logits.sum() * 0

    assert Nameless().name == "Nameless" and StaticWeights(["y"]).name == "StaticWeights"
    with pytest.raises(TypeError, match="must be an AdaptLoss"):
        AdaptTerm(torch.nn.Identity())
    term = StaticWeights(["y"], [2.0])
    trainer = Trainer(SmallCNN(), loss_terms=[term], progress=False)
    trainer.save(tmp_path / "run.pt")
    saved = torch.load(tmp_path / "run.pt", weights_only=True)["terms"]
    assert list(saved) == ["StaticWeights"]


class _Zero(LossTerm):
    """Adds nothing; asks the Trainer to weigh the supervised loss by ``weight``."""

    name = "zero"

    def __init__(self, weight: float):
        super().__init__()
        self.supervised_weight = weight

    def forward(self, step):
        return step.logits.sum() * 0


def test_the_trainer_weighs_the_supervised_loss_by_the_terms_supervised_weights():
    history = Trainer(SmallCNN(), loss_terms=[_Zero(0.5), _Zero(0.5)], progress=False).fit(
        _data(), epochs=1
    )
    assert history["loss"][0] == pytest.approx(0.25 * history["ce"][0], rel=1e-6)
    with pytest.raises(ValueError, match="returns the whole supervised loss"):
        Trainer(SmallCNN(), loss_terms=[StaticWeights(["y"]), _Zero(0.5)], progress=False)


def test_a_term_must_be_initialised_and_must_not_take_a_name_of_the_history():
    class Forgot(LossTerm):
        def __init__(self):
            self.weight = 1.0  # no super().__init__()

        def forward(self, step):
            return step.logits.sum() * 0

    with pytest.raises(TypeError, match=r"call super\(\).__init__\(\) first"):
        Trainer(SmallCNN(), loss_terms=[Forgot()], progress=False)

    def loss(step):
        return step.logits.sum() * 0

    with pytest.raises(ValueError, match="'loss' is taken by the Trainer's history"):
        Trainer(SmallCNN(), loss_terms=[loss], progress=False)


def test_a_resumed_run_restores_each_terms_state_by_name(tmp_path):
    from transferlab.adapt import make_term
    from transferlab.train import CheckpointError

    x, y = _data()
    path = tmp_path / "dann.pt"
    first = Trainer(SmallCNN(), loss_terms=[make_term("dann", 128)], progress=False)
    first.fit((x, y), epochs=1, unlabelled=x, checkpoint=path)
    again = Trainer(SmallCNN(), loss_terms=[make_term("dann", 128)], progress=False)
    again.load(path)
    for a, b in zip(first.loss_terms[0].parameters(), again.loss_terms[0].parameters()):
        assert torch.equal(a, b)
    state = torch.load(path, weights_only=True)
    state["terms"] = list(state["terms"].values())  # how checkpoints were written before
    torch.save(state, path)
    with pytest.raises(CheckpointError, match="saved by position"):
        Trainer(SmallCNN(), loss_terms=[make_term("dann", 128)], progress=False).load(path)


def test_the_readme_example_of_a_loss_term_and_a_callback_runs_as_written(capsys):
    """The README's example of the two bases, executed as it is printed there."""
    from pathlib import Path

    readme = (Path(__file__).parents[1] / "README.md").read_text()
    blocks = [b.split("```", 1)[0] for b in readme.split("```python\n")[1:]]
    (block,) = [b for b in blocks if "class Entropy(LossTerm)" in b]
    exec(compile(block, "README.md", "exec"), {})  # noqa: S102 (the README's own example)
    printed = capsys.readouterr().out.splitlines()
    assert [line.split(":")[0] for line in printed] == ["epoch 0", "epoch 1"]
    assert all("cross-entropy" in line and "entropy" in line for line in printed)
