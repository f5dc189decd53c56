"""A watched inbox folder for batch alarm scoring.

Each ``*.csv`` dropped into the folder (daily pack records with a header, or the
reference's headerless 84-value rows) is scored, its predictions are stored (source
``batch``), and the file is moved to ``processed/`` -- or to ``rejected/`` beside a
``<name>.reason.txt`` when nothing in it can be scored. Rows rejected inside an otherwise
good file are listed in ``processed/<name>.rejected.csv``.

Safety:

* half-written files are never read: names starting with ``.`` or ending ``.part`` /
  ``.tmp`` are skipped, and a file is taken only when its size and mtime have not changed
  for ``settle_s`` seconds (writers that rename into place are picked up at once);
* restart never scores twice: the (name, SHA-256) of every finished file is in the pack
  store's ledger, written after its predictions; a file found again (a crash between the
  ledger and the move) is only moved. Predictions are upserts by (vin, date, model), so
  even a crash before the ledger write cannot duplicate a row.
"""

from __future__ import annotations

import argparse
import hashlib
import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import ChargeTrackerError
from ..ml import Predictor
from ..ml.predict import score_bytes
from ..stores.packs import PackStore

__all__ = ["AlarmInbox", "InboxResult", "InboxWorker", "add_inbox_arguments", "start_inbox"]

log = logging.getLogger("chargetracker.alarm_inbox")

_SKIP_SUFFIXES = (".part", ".tmp", ".partial", ".crdownload")


@dataclass
class InboxResult:
    processed: list[str] = field(default_factory=list)
    rejected: list[str] = field(default_factory=list)
    predictions: int = 0
    skipped_duplicates: int = 0


class AlarmInbox:
    """Scores files dropped into ``directory``; call :meth:`poll` repeatedly."""

    def __init__(self, directory: str | Path, predictor: Predictor, store: PackStore, *,
                 settle_s: float = 2.0, clock: Callable[[], float] = time.time) -> None:
        self.dir = Path(directory)
        self.processed_dir = self.dir / "processed"
        self.rejected_dir = self.dir / "rejected"
        for d in (self.dir, self.processed_dir, self.rejected_dir):
            d.mkdir(parents=True, exist_ok=True)
        self.predictor = predictor
        self.store = store
        self.settle_s = float(settle_s)
        self._clock = clock
        self._seen: dict[str, tuple[int, int, float]] = {}

    def _ready(self, path: Path) -> bool:
        try:
            st = path.stat()
        except FileNotFoundError:
            return False
        sig = (st.st_size, st.st_mtime_ns)
        now = self._clock()
        prev = self._seen.get(path.name)
        if prev is None or prev[:2] != sig:
            self._seen[path.name] = (*sig, now)
            # Untouched for settle_s already (e.g. renamed into place, or present at
            # start): no need to wait a second poll.
            return now - st.st_mtime >= self.settle_s
        return now - prev[2] >= self.settle_s or now - st.st_mtime >= self.settle_s

    def candidates(self) -> list[Path]:
        out = []
        for p in sorted(self.dir.iterdir()):
            if not p.is_file() or p.name.startswith(".") or p.name.endswith(_SKIP_SUFFIXES):
                continue
            if p.suffix.lower() != ".csv":
                continue
            if self._ready(p):
                out.append(p)
        return out

    def poll(self) -> InboxResult:
        """Process every settled file once; returns what happened."""
        res = InboxResult()
        for path in self.candidates():
            self._one(path, res)
        return res

    def _move(self, path: Path, target_dir: Path) -> Path:
        target = target_dir / path.name
        if target.exists():
            stem = f"{path.stem}.{int(self._clock() * 1000)}"
            target = target_dir / f"{stem}{path.suffix}"
        os.replace(path, target)
        self._seen.pop(path.name, None)
        return target

    def _one(self, path: Path, res: InboxResult) -> None:
        data = path.read_bytes()
        digest = hashlib.sha256(data).hexdigest()
        if self.store.inbox_seen(path.name, digest):
            log.info("inbox: %s was already scored; moving it without scoring again", path.name)
            self._move(path, self.processed_dir)
            res.skipped_duplicates += 1
            return
        try:
            preds, rejected = score_bytes(self.predictor, data, source=path.name)
            if preds.height == 0:
                why = "no VIN has 14 days of records"
                if rejected.height:
                    first = rejected.row(0, named=True)
                    why += (f"; {rejected.height} row(s) rejected, first: line "
                            f"{first['row'] + 2}, field {first['field']}: {first['reason']}")
                raise _Reject(why)
        except (ChargeTrackerError, _Reject) as exc:
            moved = self._move(path, self.rejected_dir)
            moved.with_name(moved.name + ".reason.txt").write_text(f"{exc}\n")
            self.store.inbox_record(path.name, digest, status="rejected", predictions=0,
                                    reason=str(exc)[:2000])
            log.warning("inbox: rejected %s: %s", path.name, exc)
            res.rejected.append(path.name)
            return
        rid = f"inbox:{path.name}:{digest[:12]}"
        n = self.store.upsert_predictions(preds, source="batch", request_id=rid)
        self.store.inbox_record(path.name, digest, status="processed", predictions=n)
        moved = self._move(path, self.processed_dir)
        if rejected.height:
            rejected.write_csv(moved.with_name(moved.name + ".rejected.csv"))
        log.info("inbox: scored %s: %d predictions, %d rows rejected", path.name, n,
                 rejected.height)
        res.processed.append(path.name)
        res.predictions += n


class _Reject(Exception):
    pass


class InboxWorker:
    """An :class:`AlarmInbox` polled on a background thread, beside a pipeline or the web
    server (``chargetracker run/serve --alarm-inbox DIR``).

    It opens its own pack store on ``store_url`` (the same database the rest of the
    process uses) so the ledger of scored files is shared with ``alarm inbox`` and
    survives restarts. A file that fails unexpectedly is logged and retried at the next
    poll; the thread never dies of one bad file.
    """

    def __init__(self, directory: str | Path, store_url: str, *, model_dir: str | None = None,
                 interval_s: float = 2.0, settle_s: float = 2.0) -> None:
        from ..stores.models import load_default_model, load_model
        from ..stores.packs import open_pack_store

        art = load_model(model_dir) if model_dir else load_default_model()
        self.predictor = Predictor(art)
        self.store = open_pack_store(store_url)
        self.inbox = AlarmInbox(directory, self.predictor, self.store, settle_s=settle_s)
        self.interval_s = max(0.05, float(interval_s))
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="alarm-inbox", daemon=True)
        self.polls = 0

    def start(self) -> InboxWorker:
        self._thread.start()
        return self

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                self.inbox.poll()
            except Exception:  # an I/O or store error: keep watching, say why
                log.exception("inbox: poll of %s failed; retrying", self.inbox.dir)
            self.polls += 1
            self._stop.wait(self.interval_s)

    def stop(self, timeout_s: float = 30.0) -> None:
        """Stop after the file in hand (never halfway through one) and close the store."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout_s)
        self.store.close()


def add_inbox_arguments(parser: argparse.ArgumentParser) -> None:
    """``--alarm-inbox DIR`` / ``--alarm-model DIR`` / ``--alarm-interval S`` for
    ``run`` and ``serve``."""
    g = parser.add_argument_group("consistency-alarm inbox")
    g.add_argument("--alarm-inbox", metavar="DIR", help="also watch DIR: score each daily "
                   "pack-record CSV dropped in, store the predictions, move it to "
                   "processed/ or rejected/")
    g.add_argument("--alarm-model", metavar="DIR", help="alarm model directory (default: "
                   "the packaged model); also used by the API's alarm endpoints")
    g.add_argument("--alarm-interval", type=float, default=2.0, metavar="S",
                   help="inbox poll interval, s (default 2)")


def start_inbox(args: argparse.Namespace, store_url: str) -> InboxWorker | None:
    """The running worker when ``--alarm-inbox`` was given, else None; also makes
    ``--alarm-model`` the API's alarm model."""
    model_dir = getattr(args, "alarm_model", None)
    if model_dir:
        from ..api.routes_alarms import use_model_dir

        use_model_dir(model_dir)
    directory = getattr(args, "alarm_inbox", None)
    if not directory:
        return None
    worker = InboxWorker(directory, store_url, model_dir=model_dir,
                         interval_s=getattr(args, "alarm_interval", 2.0))
    print(f"alarm inbox: watching {worker.inbox.dir} with {worker.predictor.model_version}",
          flush=True)
    return worker.start()
