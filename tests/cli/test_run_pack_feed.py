"""``chargetracker run --pack-feed``: a simulated fleet of cells in packs (metadata
``pack_id``) gets daily pack records and stream predictions equal to the batch
derivation of the same samples (ml/from_cells.py, the pack kind's batch form), and a
restart adds nothing (cli/run.py, runtime/pack_feed.py, runtime/pack_days.py)."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest

from chargetracker.cli import main
from chargetracker.config import Settings
from chargetracker.kinds.pack import ALARM_RULE, PACK_FEED_CELLS, PackKind
from chargetracker.ml.from_cells import daily_pack_records, pack_of_cells
from chargetracker.ml.predict import Predictor
from chargetracker.runtime.pack_feed import FEED_SOURCE
from chargetracker.sim import Fleet
from chargetracker.sim.fleet_config import load_fleet_config
from chargetracker.stores.models import load_default_model
from chargetracker.stores.url import open_store

FLEET = """
seed = 4
start = 2024-01-01T00:00:00Z
sample_period_s = 120.0
duration_h = 400.0
[[groups]]
name = "nmc"
chemistry = "NMC"
test_type = "standard"
count = 4
cells_per_pack = 2
[[groups]]
name = "lfp"
chemistry = "LFP"
test_type = "standard"
count = 2
cells_per_pack = 2
"""


def _stream_rows(url: str) -> tuple[pl.DataFrame, pl.DataFrame, int, pl.DataFrame]:
    with open_store(url, kinds=[PackKind()]) as store:
        recs = store.rows("pack_records", filters={"source": FEED_SOURCE}, unbounded=True)
        preds = store.rows("alarm_predictions", filters={"source": FEED_SOURCE}, unbounded=True)
        alarms = store.alerts(limit=10_000).filter(pl.col("rule") == ALARM_RULE).height
        feed = store.rows(PACK_FEED_CELLS.name, unbounded=True)
    return recs.sort("vin", "date"), preds.sort("vin", "date"), alarms, feed


def test_run_with_pack_feed_equals_the_batch_derivation(tmp_path: Path) -> None:
    fleet_toml = tmp_path / "fleet.toml"
    fleet_toml.write_text(FLEET)
    url = f"duckdb:///{tmp_path / 'run.duckdb'}"
    args = ["run", "--store", url, "--simulate", "--fleet", str(fleet_toml), "--accel", "max",
            "--no-summary", "--max-batch-rows", "5000", "--pack-feed"]
    assert main(args) == 0

    fleet = Fleet(load_fleet_config(fleet_toml))
    samples = pl.concat(list(fleet.chunks(seconds=24 * 3600.0)))
    packs = pack_of_cells(fleet.cells)
    assert packs.get_column("vin").n_unique() == 3
    last_day = int(samples.get_column("ts").max() // 86_400)
    expected = daily_pack_records(samples, packs).filter(
        pl.col("date").cast(pl.Int32) < last_day)      # the running day is not complete
    recs, preds, alarms, feed = _stream_rows(url)
    assert expected.height >= 3 * 15
    assert recs.select("vin", "date").equals(expected.select("vin", "date"))
    for c in ("total_voltage_v", "total_current_a", "cell_max_v", "cell_min_v",
              "max_temperature_c", "min_temperature_c"):
        assert recs.get_column(c).to_list() == pytest.approx(
            expected.get_column(c).to_list(), rel=1e-12), c

    # The pack kind's batch form on the same records: the same VIN-days and probabilities.
    batch = PackKind(Predictor(load_default_model()), Settings()).summarize(expected)
    want = batch.tables["alarm_predictions"].sort("vin", "date")
    assert want.height > 0
    assert preds.select("vin", "date").equals(want.select("vin", "date"))
    assert preds.get_column("probability").to_list() == pytest.approx(
        want.get_column("probability").to_list(), abs=1e-9)
    # At most two rows per pack cell (newest day, older days) hold the open days; no blob.
    assert feed.get_column("cell_id").n_unique() == packs.height
    assert feed.height <= 2 * packs.height
    with open_store(url, kinds=[PackKind()]) as store:
        cp = store.load_checkpoint("pack-days/embedded")
    assert cp is not None and len(cp.state) < 100

    # A restart resumes at the end: no record, prediction or alarm is added or repeated.
    assert main(args) == 0
    again, preds2, alarms2, _ = _stream_rows(url)
    assert again.height == recs.height and preds2.height == preds.height
    assert alarms2 == alarms
    assert again.get_column("updated_at").equals(recs.get_column("updated_at"))


def test_run_checks_the_pack_model_at_start(tmp_path: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    url = f"duckdb:///{tmp_path / 'bad.duckdb'}"
    missing = tmp_path / "no-model"
    assert main(["run", "--store", url, "--simulate", "--cells", "2", "--hours", "1",
                 "--accel", "max", "--no-summary", "--pack-feed", "--pack-model",
                 str(missing)]) == 2
    assert str(missing) in capsys.readouterr().err
