"""Fleet config: defaults, TOML loading, clear errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from chargetracker.errors import ConfigError
from chargetracker.sim import Fleet, default_fleet_config, load_fleet_config

TOML = """
seed = 9
sample_period_s = 5.0
duration_h = 2
time_acceleration = 600
start = "2026-03-01T00:00:00Z"
include_labels = true

[faults]
enabled = ["spikes", "dropouts"]
spike_rate = 1e-3

[ageing]
fade_per_cycle = 0.001

[protocols.fast]
steps = [
  {kind = "charge", c_rate = 3.0, cutoff_c_rate = 0.1},
  {kind = "rest", duration_s = 300},
  {kind = "discharge", c_rate = 1.0, v_limit = 3.0},
  {kind = "rest", duration_s = 300},
]

[[groups]]
chemistry = "lco"
test_type = "fast"
count = 3

[[groups]]
name = "nmc-ref"
chemistry = "NMC"
test_type = "standard"
count = 2
nominal_capacity_ah = 5.0
[groups.ageing]
defective_fraction = 0.5
"""


def test_default_fleet_is_104_cells_in_4_groups() -> None:
    cfg = default_fleet_config()
    assert cfg.n_cells == 104
    assert [(g.chemistry, g.test_type, g.count) for g in cfg.groups] == [
        ("NMC", "standard", 26), ("NMC", "accelerated", 26),
        ("LFP", "standard", 26), ("LFP", "accelerated", 26)]
    assert cfg.sample_period_s == 1.0 and cfg.time_acceleration == 3600.0
    assert [g.count for g in default_fleet_config(cells=10).groups] == [3, 3, 2, 2]


def test_load_toml(tmp_path: Path) -> None:
    path = tmp_path / "fleet.toml"
    path.write_text(TOML)
    cfg = load_fleet_config(path)
    assert cfg.seed == 9 and cfg.duration_s == 7200.0 and cfg.time_acceleration == 600.0
    assert cfg.start_epoch == 1772323200.0
    assert cfg.faults.enabled == {"spikes", "dropouts"}
    assert cfg.groups[0].name == "lco-fast" and cfg.groups[0].chemistry == "LCO"
    assert cfg.groups[1].ageing is not None
    assert cfg.groups[1].ageing.defective_fraction == 0.5
    assert cfg.groups[1].ageing.fade_per_cycle == 0.001  # inherited from [ageing]
    fleet = Fleet(cfg)
    cells = fleet.cells
    assert cells["nominal_capacity_ah"].to_list() == [2.28] * 3 + [5.0] * 2
    assert len(fleet.metadata["defective"]) == 1
    frame = fleet.advance(3600.0)
    assert frame["ts"].min() >= 1772323200.0 - 1.0
    lco = frame.filter(frame["cell_id"] == "lco-fast-001")
    assert lco["current_a"].max() == pytest.approx(3.0 * 2.28, rel=0.01)


@pytest.mark.parametrize("text, match", [
    ("sede = 1", "unknown fleet setting"),
    ("[[groups]]\nchemistry = 'NMC'\ncount = 2", "missing 'test_type'"),
    ("[[groups]]\nchemistry = 'NaIon'\ntest_type = 'standard'\ncount = 2", "unknown chemistry"),
    ("[[groups]]\nchemistry = 'NMC'\ntest_type = 'nope'\ncount = 2", "unknown test type"),
    ("[faults]\nenabled = ['gremlins']", "unknown fault"),
    ("[ageing]\nfade = 1", "unknown ageing setting"),
    ("seed = ", "invalid TOML"),
])
def test_bad_config_names_the_problem(tmp_path: Path, text: str, match: str) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=match) as info:
        load_fleet_config(path)
    assert "bad.toml" in str(info.value)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        load_fleet_config(tmp_path / "nope.toml")
