"""The pack kind's pipeline: daily pack records through the one micro-batch step.

:func:`pack_pipeline` is the :class:`~chargetracker.runtime.Pipeline` of the pack kind
on a store opened with it (``open_store(url, kinds=[PackKind()])``). There is one per
store in a process (:func:`shared_pack_pipeline`): two pipelines of one name would
overwrite each other's checkpoint, and the HTTP ingest (``POST /api/v1/pack-records``)
and the live feed from cell telemetry (:mod:`chargetracker.runtime.pack_feed`) both
write through it.

Predicted alarms become alert episodes with positions in days: an episode resolves after
``settings.alerts.resolve_after_cycles`` consecutive days predicted clean, and the rate
limit (``max_new_episodes_per_hour``) counts new episodes per *day* of data, since every
VIN's prediction for a day carries that day's midnight as its ts.
"""

from __future__ import annotations

import threading
from typing import Any

from ..config import Settings
from ..episodes import EpisodePolicy
from ..kinds.pack import PackKind
from ..ml.predict import Predictor
from .pipeline import Pipeline
from .step import AlertPolicy

__all__ = ["PACK_PIPELINE", "load_pack_kind", "pack_episode_policy", "pack_pipeline",
           "shared_pack_pipeline"]

#: Checkpoint name of the pack pipeline.
PACK_PIPELINE = "pack"
_DAY_S = 86_400.0

_shared: dict[int, Pipeline] = {}
_shared_lock = threading.Lock()


def load_pack_kind(settings: Settings, model_dir: str | None = None) -> PackKind:
    """The pack kind with the model of ``model_dir`` (None: the packaged default)."""
    from ..stores.models import load_default_model, load_model

    art = load_model(model_dir) if model_dir else load_default_model()
    return PackKind(Predictor(art), settings)


def pack_episode_policy(settings: Settings) -> EpisodePolicy | None:
    """Alarm episodes in days (None when ``settings.alerts.episodes`` is off)."""
    a = settings.alerts
    if not a.episodes:
        return None
    return EpisodePolicy(resolve_after=a.resolve_after_cycles,
                         max_new_per_window=a.max_new_episodes_per_hour, window_s=_DAY_S,
                         notify_resolved=a.notify_resolved)


def pack_pipeline(store: Any, settings: Settings, kind: PackKind, *,
                  name: str = PACK_PIPELINE) -> Pipeline:
    """A pipeline of ``kind`` on ``store`` (which must hold the kind's tables)."""
    specs = getattr(store, "plugin_specs", {})
    missing = [t.name for t in kind.tables if t.name not in specs]
    if missing:
        from ..errors import ConfigError

        raise ConfigError(f"the store was opened without the pack kind (no table "
                          f"{missing[0]!r}): open_store(url, kinds=[PackKind()])")
    pipeline = Pipeline(store, settings, name=name, kind=kind)
    policy = pack_episode_policy(settings)
    pipeline.alert_policy = AlertPolicy(episodes=policy if policy is not None else False)
    return pipeline


def shared_pack_pipeline(store: Any, settings: Settings,
                         model_dir: str | None = None) -> Pipeline:
    """The process's pack pipeline on ``store`` (made on first use, with the model of
    ``model_dir`` or the packaged default)."""
    with _shared_lock:
        pipeline = _shared.get(id(store))
        if pipeline is None or pipeline.store is not store:
            _upgrade_tables(store)
            pipeline = pack_pipeline(store, settings, load_pack_kind(settings, model_dir))
            _shared[id(store)] = pipeline
        return pipeline


def _upgrade_tables(store: Any) -> None:
    """Pack tables of a store written before the pack kind get its layout (the pack
    store's upgrade, :mod:`chargetracker.stores.packs`), before the first commit."""
    url = getattr(store, "url", "")
    if not url or url.endswith(":memory:"):
        return  # a new in-memory database has no old tables
    from ..stores.packs import open_pack_store

    open_pack_store(url).close()
