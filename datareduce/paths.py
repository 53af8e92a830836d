"""Where datareduce keeps what it can recompute: one cache root for every trainer, patch and command."""
from __future__ import annotations

import os
from pathlib import Path


def cache_root() -> Path:
    """``$DATAREDUCE_CACHE``, else ``~/.cache/datareduce``."""
    return Path(os.environ.get("DATAREDUCE_CACHE") or Path.home() / ".cache" / "datareduce")


def embeddings_dir() -> Path:
    """The default embedding cache (IDS and SSP), shared by both trainers, the patches and ``datareduce ids``."""
    return cache_root() / "embeddings"
