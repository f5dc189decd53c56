"""Per house and per zip code daily totals, from the meters' days (pure, vectorized).

Per house and day: mains kWh (the sum of the house's mains meters, one per phase),
each appliance's kWh and share of the mains, and the unmetered rest (mains minus the
appliances). Per zip and day: total mains kWh, houses reporting, mean and median per house.
"""

from __future__ import annotations

import polars as pl

from .schema import HOUSE_DAY_SCHEMA, MAINS, UNMETERED, ZIP_DAY_SCHEMA

__all__ = ["meter_days_with_share", "house_days", "zip_days", "house_breakdown"]

_META = ["meter_id", "house_id", "appliance", "zip"]


def _joined(days: pl.DataFrame, meters: pl.DataFrame) -> pl.DataFrame:
    return days.join(meters.select(_META), on="meter_id", how="inner")


def house_days(days: pl.DataFrame, meters: pl.DataFrame) -> pl.DataFrame:
    """One row per house and local date (the date of its mains meters' zone).

    Houses without a mains meter on a day are left out: their share cannot be known.
    """
    j = _joined(days, meters)
    is_mains = pl.col("appliance") == MAINS
    out = (
        j.group_by("house_id", "date", maintain_order=True)
        .agg(
            pl.col("zip").first(),
            pl.col("energy_kwh").filter(is_mains).sum().alias("mains_kwh"),
            pl.col("energy_kwh").filter(~is_mains).sum().alias("appliances_kwh"),
            (~is_mains).sum().cast(pl.Int64).alias("n_appliances"),
            pl.col("coverage").filter(is_mains).min().alias("coverage"),
            is_mains.any().alias("__has_mains"),
        )
        .filter(pl.col("__has_mains"))
        .with_columns((pl.col("mains_kwh") - pl.col("appliances_kwh")).alias("unmetered_kwh"))
        .select(list(HOUSE_DAY_SCHEMA))
        .sort("house_id", "date")
    )
    return out.cast(HOUSE_DAY_SCHEMA)  # type: ignore[arg-type]


def meter_days_with_share(days: pl.DataFrame, meters: pl.DataFrame) -> pl.DataFrame:
    """The meters' days with house, appliance, zip and ``share_of_mains`` (null without mains)."""
    j = _joined(days, meters)
    mains = house_days(days, meters).select("house_id", "date", "mains_kwh")
    out = j.join(mains, on=["house_id", "date"], how="left").with_columns(
        pl.when(pl.col("mains_kwh") != 0).then(pl.col("energy_kwh") / pl.col("mains_kwh"))
        .otherwise(None).alias("share_of_mains")
    ).drop("mains_kwh")
    return out.sort("house_id", "date", "meter_id")


def house_breakdown(days: pl.DataFrame, meters: pl.DataFrame) -> pl.DataFrame:
    """Stacked-bar rows: per house and day each appliance's kWh plus ``unmetered``.

    Columns: house_id, date, appliance, energy_kwh, share_of_mains. The parts add up to
    the mains (the unmetered rest is negative when the appliances exceed the mains).
    """
    j = _joined(days, meters).filter(pl.col("appliance") != MAINS)
    hd = house_days(days, meters)
    parts = (j.group_by("house_id", "date", "appliance").agg(pl.col("energy_kwh").sum())
             .join(hd.select("house_id", "date"), on=["house_id", "date"], how="inner"))
    rest = hd.select("house_id", "date", pl.lit(UNMETERED).alias("appliance"),
                     pl.col("unmetered_kwh").alias("energy_kwh"))
    allp = pl.concat([parts.select(rest.columns), rest], how="vertical")
    return (allp.join(hd.select("house_id", "date", "mains_kwh"), on=["house_id", "date"])
            .with_columns(pl.when(pl.col("mains_kwh") != 0)
                          .then(pl.col("energy_kwh") / pl.col("mains_kwh")).otherwise(None)
                          .alias("share_of_mains"))
            .drop("mains_kwh").sort("house_id", "date", "appliance"))


def zip_days(houses: pl.DataFrame, *, min_coverage: float = 0.0) -> pl.DataFrame:
    """Per zip and date over house days with mains coverage >= ``min_coverage``."""
    h = houses.filter(pl.col("zip").is_not_null() & (pl.col("coverage") >= min_coverage))
    out = (h.group_by("zip", "date").agg(
        pl.col("mains_kwh").sum().alias("total_kwh"),
        pl.len().cast(pl.Int64).alias("houses_reporting"),
        pl.col("mains_kwh").mean().alias("mean_kwh_per_house"),
        pl.col("mains_kwh").median().alias("median_kwh_per_house"),
    ).sort("zip", "date"))
    return out.select(list(ZIP_DAY_SCHEMA)).cast(ZIP_DAY_SCHEMA)  # type: ignore[arg-type]
