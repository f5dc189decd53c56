"""Look and vocabulary of the dashboard: colours, metric labels and units, formatting.

Pure constants and small pure helpers (no Dash, no store), shared by the figure
builders, the tables and the page layouts.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime

from ..stores.base import TREND_METRICS

__all__ = [
    "PALETTE",
    "DASHES",
    "METRICS",
    "OVERVIEW_METRICS",
    "MetricSpec",
    "metric_spec",
    "group_styles",
    "rgba",
    "fmt_duration",
    "fmt_rate",
    "fmt_count",
    "fmt_ts",
    "FONT",
    "CSS",
]

#: Okabe-Ito (colour-blind safe) without its yellow, which is unreadable on white,
#: followed by Paul Tol's "muted" hues: 12 distinguishable line colours. Beyond 12
#: groups the colours repeat with a different dash pattern.
PALETTE: tuple[str, ...] = (
    "#0072B2",  # blue
    "#E69F00",  # orange
    "#009E73",  # bluish green
    "#D55E00",  # vermillion
    "#CC79A7",  # reddish purple
    "#56B4E9",  # sky blue
    "#000000",  # black
    "#882255",  # wine
    "#999933",  # olive
    "#332288",  # indigo
    "#44AA99",  # teal
    "#AA4499",  # purple
)
DASHES: tuple[str, ...] = ("solid", "dash", "dot", "dashdot")

FONT = "system-ui, -apple-system, 'Segoe UI', Roboto, 'Helvetica Neue', Arial, sans-serif"


@dataclass(frozen=True, slots=True)
class MetricSpec:
    """How a cycle metric is shown: label, display unit, scale from the stored unit."""

    label: str
    unit: str
    scale: float = 1.0       # display value = stored value x scale
    decimals: int = 3

    @property
    def axis_title(self) -> str:
        return f"{self.label} ({self.unit})"

    @property
    def d3(self) -> str:
        """d3 number format for hover labels."""
        return f".{self.decimals}f"

    def fmt(self, value: float | None) -> str:
        if value is None or not math.isfinite(value):
            return "–"
        return f"{value * self.scale:.{self.decimals}f} {self.unit}"


#: Every metric of :data:`~chargetracker.stores.base.TREND_METRICS` (stored in SI units
#: and fractions; shown in the units engineers read: %, mOhm, h).
METRICS: dict[str, MetricSpec] = {
    "discharge_ah": MetricSpec("Discharge capacity", "Ah", 1.0, 4),
    "charge_ah": MetricSpec("Charge capacity", "Ah", 1.0, 4),
    "discharge_wh": MetricSpec("Discharge energy", "Wh", 1.0, 3),
    "charge_wh": MetricSpec("Charge energy", "Wh", 1.0, 3),
    "coulombic_efficiency": MetricSpec("Coulombic efficiency", "%", 100.0, 3),
    "energy_efficiency": MetricSpec("Energy efficiency", "%", 100.0, 2),
    "retention": MetricSpec("Capacity retention", "%", 100.0, 2),
    "mean_charge_v": MetricSpec("Mean charge voltage", "V", 1.0, 4),
    "mean_discharge_v": MetricSpec("Mean discharge voltage", "V", 1.0, 4),
    "internal_resistance_ohm": MetricSpec("Internal resistance", "mΩ", 1000.0, 2),
    "duration_s": MetricSpec("Cycle duration", "h", 1.0 / 3600.0, 3),
    "max_temperature_c": MetricSpec("Max temperature", "°C", 1.0, 2),
    "mean_temperature_c": MetricSpec("Mean temperature", "°C", 1.0, 2),
}
assert set(METRICS) == set(TREND_METRICS), "every trend metric needs a display spec"

#: Selectable on the overview, in menu order (the default first).
OVERVIEW_METRICS: tuple[str, ...] = (
    "discharge_ah", "discharge_wh", "charge_ah", "charge_wh", "coulombic_efficiency",
    "energy_efficiency", "retention", "mean_discharge_v", "mean_charge_v",
    "internal_resistance_ohm", "duration_s", "max_temperature_c", "mean_temperature_c",
)


def metric_spec(metric: str) -> MetricSpec:
    """The display spec of a metric (a plain fallback for unknown names)."""
    return METRICS.get(metric, MetricSpec(metric.replace("_", " "), "", 1.0, 4))


def group_styles(groups: list[str] | tuple[str, ...]) -> dict[str, tuple[str, str]]:
    """(colour, dash) per group, assigned in sorted order so a group keeps its colour
    whatever subset is shown."""
    out: dict[str, tuple[str, str]] = {}
    for i, g in enumerate(sorted(groups)):
        out[g] = (PALETTE[i % len(PALETTE)], DASHES[(i // len(PALETTE)) % len(DASHES)])
    return out


def rgba(hex_colour: str, alpha: float) -> str:
    """``#rrggbb`` -> ``rgba(r,g,b,alpha)``."""
    h = hex_colour.lstrip("#")
    r, g, b = (int(h[i:i + 2], 16) for i in (0, 2, 4))
    return f"rgba({r},{g},{b},{alpha:g})"


def fmt_duration(seconds: float | None) -> str:
    """Human duration: ``0.4 s``, ``12 s``, ``3.5 min``, ``2.1 h``, ``4.0 d``."""
    if seconds is None or not math.isfinite(seconds):
        return "–"
    sign = "-" if seconds < 0 else ""
    s = abs(seconds)
    if s < 10:
        return f"{sign}{s:.1f} s"
    if s < 120:
        return f"{sign}{s:.0f} s"
    if s < 7200:
        return f"{sign}{s / 60:.1f} min"
    if s < 172800:
        return f"{sign}{s / 3600:.1f} h"
    return f"{sign}{s / 86400:.1f} d"


def fmt_count(n: float | None) -> str:
    """``1234567`` -> ``1,234,567``; large floats as ``1.2 M``."""
    if n is None or (isinstance(n, float) and not math.isfinite(n)):
        return "–"
    if abs(n) >= 10_000_000:
        return f"{n / 1e6:.1f} M"
    return f"{int(round(n)):,}"


def fmt_rate(per_s: float | None) -> str:
    """Samples per second, compact: ``0``, ``12.5``, ``2,500``, ``1.2 M``."""
    if per_s is None or not math.isfinite(per_s):
        return "–"
    if per_s >= 1e6:
        return f"{per_s / 1e6:.2f} M"
    if per_s >= 100:
        return f"{per_s:,.0f}"
    return f"{per_s:.1f}"


def fmt_ts(ts: float | None) -> str:
    """s since epoch -> ``2026-01-01 05:00:00Z`` (UTC)."""
    if ts is None or not math.isfinite(ts):
        return "–"
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M:%SZ")


#: The whole stylesheet, inlined into the page (no assets folder to ship).
CSS = """
:root { --ct-fg:#1f2933; --ct-muted:#52606d; --ct-line:#e4e7eb; --ct-bg:#f5f7fa;
        --ct-accent:#0072B2; --ct-bad:#b42318; --ct-warn:#b54708; --ct-ok:#027a48; }
* { box-sizing: border-box; }
body { margin:0; font-family:__FONT__; color:var(--ct-fg); background:var(--ct-bg); font-size:14px; }
a { color:var(--ct-accent); }
.ct-header { display:flex; align-items:center; gap:24px; padding:10px 20px; background:#102a43;
             color:#fff; flex-wrap:wrap; }
.ct-brand { font-weight:700; font-size:18px; letter-spacing:.2px; color:#fff; text-decoration:none; }
.ct-nav { display:flex; gap:4px; }
.ct-nav a { color:#d9e2ec; text-decoration:none; padding:6px 10px; border-radius:6px; }
.ct-nav a:hover { background:#243b53; }
.ct-nav a.active { background:#334e68; color:#fff; }
.ct-counters { display:flex; gap:18px; margin-left:auto; flex-wrap:wrap; }
.ct-counter { display:flex; flex-direction:column; align-items:flex-end; min-width:70px; }
.ct-counter .v { font-size:17px; font-weight:700; font-variant-numeric:tabular-nums; }
.ct-counter .k { font-size:11px; color:#9fb3c8; letter-spacing:.3px; }
.ct-counter.alarm .v { color:#ffb4a9; }
.ct-main { padding:16px 20px 40px; max-width:1500px; margin:0 auto; }
.ct-card { background:#fff; border:1px solid var(--ct-line); border-radius:8px; padding:14px 16px;
           margin-bottom:16px; }
.ct-card h2 { font-size:15px; margin:0 0 10px; }
.ct-title { font-size:20px; margin:4px 0 12px; }
.ct-controls { display:flex; gap:14px; flex-wrap:wrap; align-items:flex-end; margin-bottom:12px; }
.ct-control { display:flex; flex-direction:column; gap:4px; min-width:180px; }
.ct-control label { font-size:12px; color:var(--ct-muted); }
.ct-note { color:var(--ct-muted); font-size:13px; margin:6px 0; }
.ct-warning { color:#7a2e0e; background:#fffaeb; border:1px solid #fedf89; padding:8px 10px;
  border-radius:6px; font-size:13px; margin:6px 0; }
.ct-empty { color:var(--ct-muted); padding:24px; text-align:center; }
.ct-error { color:var(--ct-bad); padding:10px; border:1px solid #fecdca; background:#fef3f2;
            border-radius:6px; }
.ct-grid { display:grid; grid-template-columns: minmax(0,3fr) minmax(0,2fr); gap:16px; }
.ct-grid2 { display:grid; grid-template-columns: minmax(0,1fr) minmax(0,1fr); gap:16px; }
@media (max-width: 1000px) { .ct-grid, .ct-grid2 { grid-template-columns: 1fr; } }
.ct-kv { display:flex; gap:22px; flex-wrap:wrap; margin:4px 0 8px; }
.ct-kv div { display:flex; flex-direction:column; }
.ct-kv .k { font-size:12px; color:var(--ct-muted); }
.ct-kv .v { font-size:15px; font-weight:600; font-variant-numeric:tabular-nums; }
.ct-table { border-collapse:collapse; width:100%; font-size:13px; }
.ct-table th { text-align:left; color:var(--ct-muted); font-weight:600; border-bottom:2px solid var(--ct-line);
               padding:6px 8px; white-space:nowrap; }
.ct-table td { border-bottom:1px solid var(--ct-line); padding:6px 8px; vertical-align:top;
               font-variant-numeric:tabular-nums; }
.ct-table td.nowrap { white-space:nowrap; }
.ct-goto { width:170px; height:30px; border-radius:6px; border:none; padding:0 8px; }
.ct-btn { border:1px solid #bcccdc; background:#fff; border-radius:6px; padding:4px 10px; cursor:pointer;
          font-size:13px; }
.ct-btn:hover { background:#f0f4f8; }
.ct-status { font-size:12px; color:#9fb3c8; }
.ct-status.bad { color:#ffb4a9; }
""".replace("__FONT__", FONT)
