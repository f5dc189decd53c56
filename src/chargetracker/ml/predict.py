"""Scoring: daily records or the reference's 84-value rows -> predictions.

Daily records give one prediction per VIN and day t that has at least 14 earlier
calendar days (empty days count: a vehicle that stopped reporting is itself a signal),
including the day after each VIN's last record -- the forecast for the 14 days from
"tomorrow". A ``label`` column is never read here.

The 84-value batch format (VIN, date, 14 x 6 values, oldest day first) marks missing
values with -1. A day whose six values are all exactly -1 is a day without data (no
real pack has -1 V total voltage); any other -1 (e.g. -1 A current) is kept as a value.
"""

from __future__ import annotations

import datetime as dt
import io
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import polars as pl

from ..errors import ValidationError
from .artifact import ModelArtifact
from .features import feature_matrix
from .records import SIGNALS
from .windows import (
    CONTEXT_DAYS,
    MAX_SPAN_DAYS,
    Panel,
    Windows,
    build_panel,
    build_windows,
)

__all__ = ["PREDICTION_SCHEMA", "BatchRows", "Predictor", "is_batch84", "latest_window",
           "parse_batch84", "score_bytes", "windows_from_batch84"]

PREDICTION_SCHEMA: dict[str, pl.DataType] = {
    "vin": pl.Utf8(), "date": pl.Date(), "probability": pl.Float64(), "alarm": pl.Boolean(),
    "threshold": pl.Float64(), "model_version": pl.Utf8(),
}
_N84 = CONTEXT_DAYS * len(SIGNALS)
#: Rows scored per chunk: bounds the memory of the (n, 14) temporaries.
_CHUNK_DAYS = 100_000


@dataclass(frozen=True, slots=True)
class BatchRows:
    vins: list[str]
    dates: np.ndarray      # datetime64[D]
    values: np.ndarray     # (n, 84) float64, NaN for missing days


def is_batch84(head: bytes) -> bool:
    """True when the first line looks like the reference batch format (no header,
    2 + 84 fields, the third one numeric)."""
    line = head.split(b"\n", 1)[0].strip()
    parts = line.split(b",")
    if len(parts) != 2 + _N84:
        return False
    try:
        float(parts[2])
    except ValueError:
        return False
    return True


def parse_batch84(data: bytes, *, source: str = "input") -> BatchRows:
    """Rows of the reference batch format; errors name the line (1-based) and field."""
    names = ["vin", "date", *[f"v{j}" for j in range(_N84)]]
    try:
        frame = pl.read_csv(io.BytesIO(data), has_header=False, new_columns=names,
                            infer_schema=False)
    except pl.exceptions.PolarsError as exc:
        raise ValidationError(f"not a readable 84-value batch file: "
                              f"{str(exc).splitlines()[0]}", source=source) from exc
    if frame.width != len(names):
        raise ValidationError(f"expected {len(names)} fields per line (VIN, date, 84 values), "
                              f"got {frame.width}", source=source)
    vals = frame.select([pl.col(f"v{j}").str.strip_chars().cast(pl.Float64, strict=False)
                         for j in range(_N84)]).to_numpy()
    raw_null = frame.select([pl.col(f"v{j}").is_null() for j in range(_N84)]).to_numpy()
    bad = np.isnan(vals) & ~raw_null
    bad |= np.isinf(vals)
    if bad.any():
        r, c = np.argwhere(bad)[0]
        raise ValidationError(f"value {c + 1} of 84 is not a finite number", row=int(r) + 1,
                              field=f"{SIGNALS[c % 6]} (day -{CONTEXT_DAYS - c // 6})",
                              source=source)
    dates = frame.get_column("date").str.strip_chars().str.slice(0, 10).str.strptime(
        pl.Date, "%Y-%m-%d", strict=False)
    if dates.null_count():
        r = int(dates.is_null().arg_true()[0])
        raise ValidationError("not an ISO date (YYYY-MM-DD)", row=r + 1, field="date",
                              source=source)
    vins = frame.get_column("vin").str.strip_chars()
    if vins.is_null().any() or (vins.str.len_chars() == 0).any():
        r = int((vins.is_null() | (vins.str.len_chars() == 0)).arg_true()[0])
        raise ValidationError("empty VIN", row=r + 1, field="vin", source=source)
    days = vals.reshape(-1, CONTEXT_DAYS, len(SIGNALS))
    empty = (days == -1.0).all(axis=2)
    days[empty] = np.nan
    return BatchRows(vins.to_list(), dates.to_numpy().astype("datetime64[D]"),
                     days.reshape(-1, _N84))


def windows_from_batch84(rows: BatchRows) -> Windows:
    """Windows whose 14 days are the given values (one synthetic VIN block per row, so
    history features see exactly these 14 days)."""
    n = len(rows.vins)
    block = CONTEXT_DAYS + 1
    x = np.full((n * block, len(SIGNALS)), np.nan)
    x.reshape(n, block, len(SIGNALS))[:, :CONTEXT_DAYS, :] = rows.values.reshape(
        n, CONTEXT_DAYS, len(SIGNALS))
    t = rows.dates.astype(np.int64).astype(np.int32)
    day = (t[:, None] + np.arange(-CONTEXT_DAYS, 1)[None, :]).ravel().astype(np.int32)
    panel = Panel(tuple(f"#{i}" for i in range(n)), np.arange(0, n * block + 1, block),
                  np.full(n, block, np.int64), day, x, np.full(n * block, -1, np.int8))
    index = np.arange(n) * block + CONTEXT_DAYS
    return Windows(panel, index, np.arange(n), t, np.full(n, -1, np.int8), np.zeros(n, bool))


def latest_window(cols: dict[str, list[object]]) -> Windows:
    """The window of the day after the last record of ONE VIN's validated records, as
    :func:`~.records.small_columns` gives them (any order, unique days).

    Equal, array for array, to ``build_windows(build_panel(frame, extend_days=1),
    include_next_day=True)`` restricted to its last sample, without building a polars
    frame: for one HTTP prediction the frame's fixed costs exceeded the arithmetic.
    Raises :class:`ValidationError` like :func:`~.windows.build_panel` for a span over
    :data:`~.windows.MAX_SPAN_DAYS`.
    """
    vins = set(cols["vin"])
    if len(vins) != 1:
        raise ValueError("latest_window takes the records of exactly one VIN")
    vin = str(vins.pop())
    epoch = dt.date(1970, 1, 1)
    days = np.array([(d - epoch).days for d in cols["date"]], dtype=np.int32)  # type: ignore[operator]
    lo, hi = int(days.min()), int(days.max())
    span = hi - lo + 1
    if span > MAX_SPAN_DAYS:
        raise ValidationError(f"VIN {vin!r}: dates span {span} days (more than "
                              f"{MAX_SPAN_DAYS}); is a year mistyped?", field="date")
    n = span + 1  # one extended day: the prediction day after the last record
    pos = days - lo
    x = np.full((n, len(SIGNALS)), np.nan)
    x[pos] = np.array([cols[s] for s in SIGNALS], dtype=np.float64).T  # None -> NaN
    label = np.full(n, -1, np.int8)
    label[pos] = np.array([-1 if v is None else v for v in cols["label"]], dtype=np.int8)
    panel = Panel((vin,), np.array([0, n], np.int64), np.array([span], np.int64),
                  (lo + np.arange(n)).astype(np.int32), x, label)
    w = build_windows(panel, include_next_day=True)
    return w.take(np.arange(len(w)) == len(w) - 1)


class Predictor:
    """Scores windows with one model artifact."""

    def __init__(self, artifact: ModelArtifact) -> None:
        self.artifact = artifact

    @property
    def model_version(self) -> str:
        return self.artifact.model_version

    def probabilities(self, w: Windows) -> np.ndarray:
        if len(w) == 0:
            return np.zeros(0)
        return self.artifact.model.predict(feature_matrix(w, self.artifact.features,
                                                          dtype=np.float32))

    def predict_windows(self, w: Windows) -> pl.DataFrame:
        """Predictions (:data:`PREDICTION_SCHEMA`) of windows, in their order."""
        if len(w) == 0:
            return pl.DataFrame(schema=PREDICTION_SCHEMA)
        vins = pl.Series(list(w.panel.vins), dtype=pl.Utf8).gather(w.vin)
        return self._frame(vins, w.dates(), self.probabilities(w))

    def _frame(self, vins: list[str] | np.ndarray | pl.Series, dates: np.ndarray,
               p: np.ndarray) -> pl.DataFrame:
        thr = self.artifact.threshold
        # Constant columns as polars literals, VINs as a gather from the panel's VIN
        # list: no Python object per prediction (it cost more than the prediction).
        return pl.DataFrame({
            "vin": vins if isinstance(vins, pl.Series) else pl.Series(list(vins), dtype=pl.Utf8),
            "date": dates.astype("datetime64[D]"), "probability": p, "alarm": p >= thr,
        }).with_columns(pl.lit(thr, pl.Float64).alias("threshold"),
                        pl.lit(self.model_version, pl.Utf8).alias("model_version")
                        ).select(list(PREDICTION_SCHEMA)).cast(PREDICTION_SCHEMA)  # type: ignore[arg-type]

    def predict_records(self, records: pl.DataFrame, *, next_day: bool = True,
                        latest_only: bool = False) -> pl.DataFrame:
        """Predictions for validated daily records (:data:`PREDICTION_SCHEMA`).

        ``next_day``: include the day after each VIN's last record. ``latest_only``: only
        the last prediction day of each VIN. VINs with fewer than 14 days give none.
        Scored in chunks of whole VINs so memory stays bounded on millions of rows.
        """
        if records.height == 0:
            return pl.DataFrame(schema=PREDICTION_SCHEMA)
        records = records.sort("vin", "date")
        vin = records.get_column("vin")
        # VIN boundaries without materialising a Python string per row.
        starts = np.flatnonzero((vin != vin.shift(1)).fill_null(True).to_numpy())
        bounds = np.r_[starts, vin.len()]
        parts: list[pl.DataFrame] = []
        i = 0
        while i < starts.size:
            # Whole VINs per chunk, at least one.
            j = int(np.searchsorted(bounds, bounds[i] + _CHUNK_DAYS, side="right")) - 1
            j = min(max(j, i + 1), starts.size)
            parts.append(records.slice(int(bounds[i]), int(bounds[j] - bounds[i])))
            i = j

        def score(part: pl.DataFrame) -> pl.DataFrame | None:
            w = build_windows(build_panel(part, extend_days=1 if next_day else 0),
                              include_next_day=next_day)
            if latest_only and len(w):
                last = np.r_[w.vin[1:] != w.vin[:-1], True]
                w = w.take(last)
            if not len(w):
                return None
            vins = pl.Series(list(w.panel.vins), dtype=pl.Utf8).gather(w.vin)
            return self._frame(vins, w.dates(), self.probabilities(w))

        if len(parts) == 1:
            scored = [score(parts[0])]
        else:
            # Two chunks in flight: numpy releases the GIL in its array loops, so one
            # chunk's features are built while the other's trees are evaluated (the
            # booster serializes its own predictions). Order is kept.
            with ThreadPoolExecutor(max_workers=2, thread_name_prefix="alarm-score") as pool:
                scored = list(pool.map(score, parts))
        out = [f for f in scored if f is not None]
        if not out:
            return pl.DataFrame(schema=PREDICTION_SCHEMA)
        return pl.concat(out)

    def predict_batch84(self, rows: BatchRows) -> pl.DataFrame:
        w = windows_from_batch84(rows)
        return self._frame(rows.vins, rows.dates, self.probabilities(w))

    def contributions(self, w: Windows, top: int = 5, *, x: np.ndarray | None = None
                      ) -> list[list[dict[str, float | str]]]:
        """Per sample, the ``top`` features by |contribution| to the log-odds (SHAP),
        with the feature's value (None when missing); ``x`` the feature matrix of ``w``
        when the caller has it already."""
        if len(w) == 0:
            return []
        if x is None:
            x = feature_matrix(w, self.artifact.features)
        c = self.artifact.model.booster.contributions(x)[:, :-1]
        names = self.artifact.features
        order = np.argsort(-np.abs(c), axis=1)[:, :top]
        out = []
        for r in range(order.shape[0]):  # only for the few samples an HTTP call scores
            out.append([{"feature": names[k], "contribution": float(c[r, k]),
                         "value": None if np.isnan(x[r, k]) else float(x[r, k])}
                        for k in order[r]])
        return out


def score_bytes(predictor: Predictor, data: bytes, *, source: str, latest: bool = False
                ) -> tuple[pl.DataFrame, pl.DataFrame]:
    """(predictions, rejected rows) of a daily-records CSV or an 84-value batch file.

    Bad daily rows are rejected (kept with their reason) and their days treated as days
    without data; the good rows are scored. An unreadable or wrongly shaped file raises
    :class:`ValidationError`.
    """
    from .records import REJECT_SCHEMA, parse_records_csv, validate_records

    if is_batch84(data[:65536]):
        return predictor.predict_batch84(parse_batch84(data, source=source)), \
            pl.DataFrame(schema=REJECT_SCHEMA)
    checked = validate_records(parse_records_csv(data, source=source), source=source)
    return predictor.predict_records(checked.records, latest_only=latest), checked.rejected
