"""Domains of the course (chapter "Concepts"): offline digit domains and torchvision-backed ones."""

from transferlab.data.domains import OFFLINE_DOMAINS, load_domain
from transferlab.data.online import ONLINE_DOMAINS, DataUnavailableError
from transferlab.data.splits import Domain, TensorSplit

__all__ = ["OFFLINE_DOMAINS", "ONLINE_DOMAINS", "DataUnavailableError", "Domain", "TensorSplit", "load_domain"]
