"""Model artifact directories on disk, and the packaged default alarm model.

The artifact's content is defined by :mod:`chargetracker.ml.artifact` (pure); this
module only reads and writes its files. A save goes to a temporary sibling directory
first and is renamed into place, so a reader never sees a half-written model.
"""

from __future__ import annotations

import importlib.resources
import os
import shutil
import tempfile
from pathlib import Path

from ..errors import ConfigError
from ..ml.artifact import FILES, ModelArtifact

__all__ = ["DEFAULT_MODEL", "load_default_model", "load_model", "save_model"]

#: Package resource directory of the default model (trained on the AWS sample data).
DEFAULT_MODEL = "default"


def save_model(artifact: ModelArtifact, directory: str | Path) -> Path:
    """Write the artifact's files into ``directory`` (replaced atomically if present)."""
    target = Path(directory).expanduser().resolve()
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        for name, data in artifact.to_files().items():
            (tmp / name).write_bytes(data)
        if target.exists():
            old = target.with_name(f".{target.name}.old-{os.getpid()}")
            target.rename(old)
            tmp.rename(target)
            shutil.rmtree(old, ignore_errors=True)
        else:
            tmp.rename(target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return target


def load_model(directory: str | Path) -> ModelArtifact:
    """Load and check a model directory (:class:`ConfigError` naming what is wrong)."""
    path = Path(directory).expanduser()
    if not path.is_dir():
        raise ConfigError(f"model directory {str(path)!r} does not exist")
    files = {name: (path / name).read_bytes() for name in FILES if (path / name).is_file()}
    return ModelArtifact.from_files(files, where=str(path))


def load_default_model() -> ModelArtifact:
    """The model shipped in the package (``chargetracker/ml/models/default``)."""
    root = importlib.resources.files("chargetracker.ml").joinpath("models", DEFAULT_MODEL)
    files = {}
    for name in FILES:
        res = root.joinpath(name)
        if res.is_file():
            files[name] = res.read_bytes()
    if not files:
        raise ConfigError("the packaged default alarm model is missing; train one with "
                          "`chargetracker alarm train --data DAILY.csv --model DIR`")
    return ModelArtifact.from_files(files, where="packaged default model")
