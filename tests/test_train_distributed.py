"""The commands of the page "Scaling out", run as written from the repository root (a copy of its
layout in a temporary folder: ``examples/`` copied, ``.venv`` linked), with ``torchrun`` on two
CPU processes (gloo):

- the final weights equal those of one process with the same global batch (within float
  tolerance: the gradients are summed in another order);
- rank 0 alone writes the one checkpoint;
- a run resumed after epoch 1 of 2 ends with the weights of an uninterrupted one.
"""

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import torch

from transferlab.bench.common import one_thread
from transferlab.data import load_domain
from transferlab.models import SmallCNN
from transferlab.train import Trainer, read_checkpoint, seed_everything

ROOT = Path(__file__).parents[1]
PAGE = ROOT / "book" / "scale.md"


def _commands() -> list[str]:
    """The commands the page shows: its bash blocks and the inline ``.venv/bin/...`` ones."""
    text = PAGE.read_text()
    found = [
        ln.strip()
        for block in re.findall(r"```bash\n(.*?)```", text, flags=re.DOTALL)
        for ln in block.splitlines()
    ]
    found += re.findall(r"`(\.venv/bin/[^`]+)`", text)
    return [c for c in found if c]


def _run(repo: Path, command: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, TRANSFERLAB_QUIET="1")
    done = subprocess.run(
        command,
        shell=True,
        cwd=repo,
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, f"{command}\n{done.stdout[-2000:]}\n{done.stderr[-3000:]}"
    return done


@pytest.fixture(scope="module")
def repo(tmp_path_factory):
    repo = tmp_path_factory.mktemp("repo")
    (repo / ".venv").symlink_to(ROOT / ".venv")
    shutil.copytree(
        ROOT / "examples", repo / "examples", ignore=shutil.ignore_patterns("__pycache__")
    )
    return repo


@pytest.fixture(scope="module")
def torchrun(repo):
    command = next(c for c in _commands() if "torchrun" in c)
    assert command == ".venv/bin/torchrun --standalone --nproc_per_node 2 examples/fit_ddp.py"
    done = _run(repo, command)
    return command, done, read_checkpoint(repo / "runs" / "fit_ddp.pt")


def _weights(state: dict) -> dict[str, torch.Tensor]:
    return state["model"]


def test_two_processes_take_the_steps_of_one_with_the_same_global_batch(torchrun):
    _, done, state = torchrun
    assert "2 process(es) on cpu, global batch 128" in done.stdout
    target = load_domain("handwritten")
    with one_thread():
        seed_everything(0)
        single = Trainer(SmallCNN(), batch_size=128, seed=0, progress=False)
        single.fit(target.train, target.val, epochs=2)
    assert state["step"] == single.step and state["epoch"] == 2
    for name, w in single.model.state_dict().items():
        torch.testing.assert_close(_weights(state)[name], w, rtol=1e-4, atol=1e-4, msg=name)
    # the metrics are summed over both processes: the same as one process sees
    assert state["history"][-1]["val_acc"] == pytest.approx(single.history["val_acc"][-1], abs=0.02)


def test_rank_zero_alone_writes_one_checkpoint(repo, torchrun):
    assert sorted(p.name for p in (repo / "runs").iterdir()) == ["fit_ddp.pt"]


def test_a_resumed_torchrun_run_equals_an_uninterrupted_one(repo, torchrun):
    command, _, straight = torchrun
    _run(repo, f"{command} --epochs 1 --checkpoint runs/half.pt")
    assert read_checkpoint(repo / "runs" / "half.pt")["epoch"] == 1
    _run(repo, f"{command} --epochs 2 --checkpoint runs/half.pt --resume")
    resumed = read_checkpoint(repo / "runs" / "half.pt")
    assert resumed["epoch"] == 2 and resumed["step"] == straight["step"]
    for name, w in _weights(straight).items():
        torch.testing.assert_close(_weights(resumed)[name], w, rtol=0, atol=1e-6, msg=name)


def test_the_one_process_command_of_the_page_runs(repo):
    command = next(c for c in _commands() if c.startswith(".venv/bin/python examples/fit_ddp.py"))
    done = _run(repo, command)
    assert "1 process(es) on cpu, global batch 64" in done.stdout
