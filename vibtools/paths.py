"""Where vibtools keeps things for a user: the per-user cache folders, each overridable by an environment variable.

Torch-free and import-light, so that finding the data folder does not load the run store.
"""

from __future__ import annotations

import os
from pathlib import Path

from .config import user_path


def user_folder(env: str, name: str) -> Path:
    """$env if set, else the per-user cache folder ($XDG_CACHE_HOME or ~/.cache)/vibtools/name."""
    if os.environ.get(env):
        return user_path(os.environ[env], f"${env}")
    cache = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(cache) / "vibtools" / name
