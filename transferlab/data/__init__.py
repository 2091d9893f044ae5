"""Domains of the course (page ``book/concepts.md``): offline digit domains, torchvision-backed
ones, and a folder of your own images."""

from transferlab.data.domains import OFFLINE_DOMAINS, load_domain
from transferlab.data.folder import FolderSplit, load_folder
from transferlab.data.online import ONLINE_DOMAINS, DataUnavailableError
from transferlab.data.splits import Domain, TensorSplit, TransformedSplit

__all__ = [
    "OFFLINE_DOMAINS",
    "ONLINE_DOMAINS",
    "DataUnavailableError",
    "Domain",
    "FolderSplit",
    "TensorSplit",
    "TransformedSplit",
    "load_domain",
    "load_folder",
]
