"""``chargetracker alarm``: train, predict (daily records and the 84-value format),
evaluate, and clear errors."""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl
import pytest

from chargetracker.cli import main

DATA = Path(__file__).resolve().parents[1] / "data"
SERIES = DATA / "bms-series_samples.csv"
BATCH = DATA / "bms-test_batch_samples-head.csv"


def _subset(tmp_path: Path, vins: int = 20) -> Path:
    frame = pl.read_csv(SERIES, infer_schema=False)
    # Vehicles with alarms first (training needs both classes), then others.
    alarmed = ["JH4PC6DU52KF7SVMZ", "KPWSVM989RD7CXFA5", "ZJRY34BK1EVGT58AM",
               "CXYKPZ232TAL5MF81", "C60JG5UL59BHDSATY", "HTMK13BP6R0Z8WJX2"]
    others = [v for v in frame.get_column("VIN").unique(maintain_order=True) if v not in alarmed]
    keep = pl.Series((alarmed + others)[:vins])
    out = tmp_path / "subset.csv"
    frame.filter(pl.col("VIN").is_in(keep.implode())).write_csv(out)
    return out


def test_predict_daily_records_with_the_default_model(tmp_path: Path) -> None:
    out = tmp_path / "p.csv"
    assert main(["alarm", "predict", "--data", str(SERIES), "--out", str(out)]) == 0
    p = pl.read_csv(out)
    assert p.columns == ["vin", "date", "probability", "alarm", "threshold", "model_version"]
    # The 4,852 reference samples plus one forecast (the day after the last record) for
    # each of the 68 VINs with 14+ days.
    assert p.height == 4852 + 68
    assert p["probability"].is_between(0, 1).all()
    # Labels never reach the features: flipping them changes nothing.
    flipped = pl.read_csv(SERIES, infer_schema=False).with_columns(
        pl.when(pl.col("Label") == "1.0").then(pl.lit("0.0")).otherwise(pl.lit("1.0"))
        .alias("Label"))
    f = tmp_path / "flipped.csv"
    flipped.write_csv(f)
    out2 = tmp_path / "p2.csv"
    assert main(["alarm", "predict", "--data", str(f), "--out", str(out2)]) == 0
    assert pl.read_csv(out2).equals(p)
    latest = tmp_path / "latest.csv"
    assert main(["alarm", "predict", "--data", str(SERIES), "--out", str(latest),
                 "--latest"]) == 0
    assert pl.read_csv(latest).height == 68


def test_predict_84_value_batch_is_detected(tmp_path: Path) -> None:
    out = tmp_path / "b.csv"
    assert main(["alarm", "predict", "--data", str(BATCH), "--out", str(out)]) == 0
    p = pl.read_csv(out)
    first = BATCH.read_text().splitlines()[0].split(",")
    assert p.height == 40 and p["vin"][0] == first[0] and p["date"][0] == first[1]


def test_train_then_predict_with_the_new_model(tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    data = _subset(tmp_path)
    model = tmp_path / "model"
    assert main(["alarm", "train", "--data", str(data), "--model", str(model),
                 "--repeats", "0"]) == 0
    manifest = json.loads((model / "manifest.json").read_text())
    assert manifest["training_data"]["vins"] <= 20 and manifest["features"]
    out = tmp_path / "p.csv"
    assert main(["alarm", "predict", "--model", str(model), "--data", str(data),
                 "--out", str(out)]) == 0
    assert pl.read_csv(out)["model_version"][0] == manifest["model_version"]
    assert "predictions" in capsys.readouterr().out


def test_evaluate_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = _subset(tmp_path, vins=30)
    capsys.readouterr()
    assert main(["alarm", "evaluate", "--data", str(data), "--folds", "2",
                 "--no-random-split", "--json"]) == 0
    rep = json.loads(capsys.readouterr().out)
    assert set(rep["models"]) == {"reference-xgboost", "chargetracker-xgboost"}


def test_errors_are_clear(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.csv"
    bad.write_text("VIN,Date,TotalVoltage\nA,2020-01-01,1\n")
    assert main(["alarm", "train", "--data", str(bad), "--model", str(tmp_path / "m")]) == 2
    assert "total_current_a" in capsys.readouterr().err
    assert main(["alarm", "predict", "--data", str(tmp_path / "missing.csv"),
                 "--out", str(tmp_path / "o.csv")]) == 2
    assert "cannot read" in capsys.readouterr().err
    assert main(["alarm", "predict", "--model", str(tmp_path / "nope"), "--data", str(SERIES),
                 "--out", str(tmp_path / "o.csv")]) == 2
    assert "does not exist" in capsys.readouterr().err
    typo = tmp_path / "typo.csv"
    typo.write_text(SERIES.read_text().replace("2019-10-06,385", "2019-10-06,3x5", 1))
    assert main(["alarm", "train", "--data", str(typo), "--model", str(tmp_path / "m")]) == 2
    err = capsys.readouterr().err
    assert "B8Y3FXPDX7UV091TL" in err and "2019-10-06" in err and "total_voltage_v" in err
