# ruff: noqa: E501  (first lines of exercise cells and answers, as students write them)
"""What a student who learnt nothing hands in: for every lab, each exercise answered by the
package's own version of it (imported under the exercise's name, called, or subclassed).

``tests/test_grading_readme.py`` grades a submission of every lab made of these answers with the
README's command and expects zero: each question's hidden check runs the answer with the
package's references switched off (``transferlab.grading.own_work``).  Keys are the first lines
of the exercise cells, as ``transferlab.grading.labs.solution_sources`` returns them.
"""

DELEGATING: dict[str, dict[str, str]] = {
    "lab1_finetune": {
        "def freeze_features(model: nn.Module) -> nn.Module:": (
            "from transferlab.finetune import linear_probe as freeze_features"
        ),
        "def l2sp(model: nn.Module, reference: dict[str, torch.Tensor], alpha: float) -> torch.Tensor:": (
            "from transferlab.finetune import l2sp_penalty as l2sp"
        ),
        "def lr_groups(model: nn.Module, lr: float, decay: float = 0.1) -> list[dict]:": (
            "import transferlab.finetune\n"
            "\n"
            "def lr_groups(model, lr, decay=0.1):\n"
            "    return transferlab.finetune.discriminative_lr_groups(model, lr, decay)"
        ),
        "def fine_tune(few, seed: int = 0) -> nn.Module:": (
            "from transferlab.finetune import L2SP, discriminative_lr_groups\n"
            "\n"
            "def fine_tune(few, seed=0):\n"
            "    seed_everything(seed)\n"
            "    model = pretrained_source(seed=0)\n"
            "    Trainer(model, params=discriminative_lr_groups(model, 1e-3), seed=seed, loss_terms=[L2SP(model, alpha=1e-3)]).fit(few, epochs=100)\n"
            "    return model"
        ),
    },
    "lab2_adapt": {
        "class GradReverse(torch.autograd.Function):": (
            "from transferlab.adapt.grl import _GradReverse as GradReverse\n"
            "from transferlab.adapt import grad_reverse as grl\n"
            ""
        ),
        "def mmd2_biased(x: torch.Tensor, y: torch.Tensor, sigma: float = 1.0) -> torch.Tensor:": (
            "from transferlab.adapt import mmd2 as _mmd2\n"
            "\n"
            "\n"
            "def mmd2_biased(x, y, sigma=1.0):\n"
            "    return _mmd2(x, y, [sigma])\n"
            ""
        ),
        "def coral(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:": (
            "import transferlab.adapt.alignment as _al\n"
            "\n"
            "\n"
            "def coral(x, y):\n"
            "    return _al.coral_loss(x, y)\n"
            ""
        ),
        "def train_dann(model: nn.Module, source, target_x: torch.Tensor, steps: int = 600, lambd: float = 0.3,": (
            "from transferlab.adapt import make_term\n"
            "\n"
            "\n"
            "def train_dann(model, source, target_x, steps=600, lambd=0.3, seed=0):\n"
            "    seed_everything(seed)\n"
            '    term = make_term("dann", model.feature_dim, 1.0, max_lambda=lambd)\n'
            "    Trainer(model, optimizer=lambda p: torch.optim.Adam(p, lr=3e-3, betas=(0.5, 0.999)), loss_terms=[term],\n"
            "            batch_size=32, cpu_amp=True, seed=seed, progress=False).fit(source, unlabelled=target_x, max_steps=steps)\n"
            "    return model\n"
            ""
        ),
    },
    "lab3_negative": {
        "def nt_gap(acc_scratch: list[float], acc_transfer: list[float]) -> tuple[float, float]:": (
            "from transferlab.negative import negative_transfer_gap as nt_gap\n"
        ),
        "def leep_score(probs: torch.Tensor, labels: torch.Tensor) -> float:": (
            "from transferlab.negative import leep\n"
            "\n"
            "\n"
            "def leep_score(probs, labels):\n"
            "    return leep(probs, labels)\n"
            ""
        ),
        "def pick_source(probs_by_source: dict[str, torch.Tensor], labels: torch.Tensor) -> str:": (
            "import transferlab.negative as tn\n"
            "\n"
            "\n"
            "def pick_source(probs_by_source, labels):\n"
            "    return max(probs_by_source, key=lambda n: tn.leep(probs_by_source[n], labels))\n"
            ""
        ),
        "def gated_fit(source: torch.nn.Module, few, val, seed: int = 0) -> torch.nn.Module:": (
            "from transferlab.bench.negative import target_model\n"
            "from transferlab.negative import transfer_gate\n"
            "\n"
            "\n"
            "def gated_fit(source, few, val, seed=0):\n"
            "    models = {'transfer': copy.deepcopy(source), 'scratch': target_model(None, seed)}\n"
            "    accs = {}\n"
            "    for name, model in models.items():\n"
            "        trainer = Trainer(model, lr=1e-3, batch_size=64, seed=seed, progress=False)\n"
            "        trainer.fit(few, max_steps=100)\n"
            "        accs[name] = trainer.evaluate(val)['acc']\n"
            "    return models[transfer_gate(accs['transfer'], accs['scratch'])]\n"
            ""
        ),
    },
    "lab4_multitask": {
        "def multi_head_forward(trunk: nn.Module, heads: dict[str, nn.Module], x: torch.Tensor) -> dict[str, torch.Tensor]:": (
            "from transferlab.multitask import HardSharing\n"
            "\n"
            "def multi_head_forward(trunk, heads, x):\n"
            "    return HardSharing(trunk, heads)(x)\n"
            ""
        ),
        "def uncertainty_loss(losses: torch.Tensor, log_vars: torch.Tensor) -> torch.Tensor:": (
            "from types import SimpleNamespace\n"
            "from transferlab.multitask import UncertaintyWeighting\n"
            "\n"
            "def uncertainty_loss(losses, log_vars):\n"
            "    w = UncertaintyWeighting([str(i) for i in range(len(losses))])\n"
            "    w._parameters['log_vars'] = log_vars\n"
            "    return w(SimpleNamespace(task_losses={str(i): l for i, l in enumerate(losses)}))[0]\n"
            ""
        ),
        "def by_size_schedule(sizes: dict[str, int], n_steps: int) -> list[str]:": (
            "from transferlab.multitask.schedules import BySize\n"
            "\n"
            "def by_size_schedule(sizes, n_steps):\n"
            "    s = BySize(sizes)\n"
            "    return [s(j) for j in range(n_steps)]\n"
            ""
        ),
        "def masked_task_losses(logits: dict[str, torch.Tensor], labels: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:": (
            "from transferlab.train.supervised import masked_cross_entropy\n"
            "\n"
            "def masked_task_losses(logits, labels):\n"
            "    return {t: masked_cross_entropy(z, labels[t]) for t, z in logits.items()}\n"
            ""
        ),
        "def train_all_images(train: TensorSplit, seed: int = 0, steps: int = 100) -> nn.Module:": (
            "def train_all_images(train, seed=0, steps=100):\n"
            "    import torch\n"
            "    from transferlab.multitask import MISSING, UncertaintyWeighting, hard_sharing\n"
            "    from transferlab.train import Trainer, seed_everything\n"
            "\n"
            "    known = train.y != MISSING\n"
            "    r = int((~known).sum()) // int(known.sum())\n"
            "    rows = torch.cat([torch.nonzero(~known).flatten(), torch.nonzero(known).flatten().repeat(r)])\n"
            "    seed_everything(seed)\n"
            '    model = hard_sharing({"y": 10, **{t: 2 for t in train.groups}})\n'
            "    w = UncertaintyWeighting(list(model.head.keys()))\n"
            "    Trainer(model, lr=3e-3, seed=seed, progress=False, loss_terms=[w],\n"
            '            params=[{"params": list(model.parameters())}, {"params": list(w.parameters()), "lr": 0.05}],\n'
            "            ).fit(train.subset(rows), max_steps=steps)\n"
            "    return model\n"
            ""
        ),
    },
    "lab5_distill": {
        "def distillation_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, T: float) -> torch.Tensor:": (
            "from transferlab.distill import kd_loss as _kd\n"
            "\n"
            "\n"
            "def distillation_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, T: float) -> torch.Tensor:\n"
            "    return _kd(student_logits, teacher_logits, T)\n"
            ""
        ),
        "class LowRankLinear(nn.Module):": (
            "from transferlab.peft import LoRALinear\n"
            "\n"
            "\n"
            "class LowRankLinear(LoRALinear):\n"
            "    def __init__(self, base: nn.Linear, r: int = 4, alpha: float = 4.0):\n"
            "        super().__init__(base, r=r, lora_alpha=alpha)\n"
            "\n"
            "    @property\n"
            "    def A(self):\n"
            "        return self.lora_A\n"
            "\n"
            "    @property\n"
            "    def B(self):\n"
            "        return self.lora_B\n"
            ""
        ),
        "def count_trainable(model: nn.Module) -> tuple[int, int]:": (
            "import transferlab.peft as _peft\n"
            "\n"
            "\n"
            "def count_trainable(model: nn.Module) -> tuple[int, int]:\n"
            "    return tuple(_peft.count_parameters(model))\n"
            ""
        ),
        "def distil(student: nn.Module, teacher: nn.Module, labelled, transfer: torch.Tensor, T: float = 2.0,": (
            "from transferlab.distill import KDTerm\n"
            "\n"
            "\n"
            "def distil(student: nn.Module, teacher: nn.Module, labelled, transfer: torch.Tensor, T: float = 2.0,\n"
            "           alpha: float = 0.9, steps: int = 200, lr: float = 3e-3, seed: int = 0) -> nn.Module:\n"
            '    term = KDTerm(teacher, temperature=T, alpha=alpha, on="unlabelled")\n'
            "    Trainer(student, lr=lr, loss_terms=[term], seed=seed, progress=False).fit(labelled, max_steps=steps, unlabelled=transfer)\n"
            "    return student\n"
            ""
        ),
    },
    "lab6_text": {
        "def masked_mean(hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:": (
            "from transferlab.text import masked_mean"
        ),
        "def sentence_features(encoder: nn.Module, ids: torch.Tensor, batch_size: int = 64) -> torch.Tensor:": (
            "import transferlab.text\n"
            "\n"
            "def sentence_features(encoder, ids, batch_size=64):\n"
            "    pooled = transferlab.text.PooledEncoder(encoder).eval()\n"
            "    with torch.no_grad():\n"
            "        return torch.cat([pooled(ids[i : i + batch_size]) for i in range(0, len(ids), batch_size)])"
        ),
        "class LoRALinear(nn.Module):": ("from transferlab.peft import LoRALinear"),
        'def inject_lora(model: nn.Module, target_names=("query", "value"), r: int = 4, alpha: float = 8.0) -> list[str]:': (
            "from transferlab.peft import apply_lora\n"
            "\n"
            "def inject_lora(model, target_names=('query', 'value'), r=4, alpha=8.0):\n"
            "    names = [n for n, m in model.named_modules() if isinstance(m, nn.Linear) and any(n == t or n.endswith('.' + t) for t in target_names)]\n"
            "    apply_lora(model, list(target_names), r=r, lora_alpha=alpha)\n"
            "    return names"
        ),
        "def fit_probe(train_features, train_labels, val_features, val_labels, Cs=(0.1, 1.0, 10.0)):": (
            "from transferlab.bench.text import logistic\n"
            "\n"
            "def fit_probe(train_features, train_labels, val_features, val_labels, Cs=(0.1, 1.0, 10.0)):\n"
            "    from sklearn.linear_model import LogisticRegression\n"
            "    x, y, v = train_features.numpy(), train_labels.numpy(), (val_features.numpy(), val_labels.numpy())\n"
            "    chosen = logistic(x, y, v, v)\n"
            "    return LogisticRegression(C=chosen['C'], max_iter=1000).fit(x, y), chosen['C'], chosen['val']"
        ),
    },
}
