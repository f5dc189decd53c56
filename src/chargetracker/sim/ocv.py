"""Parametric open-circuit-voltage (OCV) curves.

An OCV curve is a linear combination of fixed basis functions of the state of charge
``soc`` (dimensionless, 0 = empty, 1 = full): Chebyshev polynomials, two logarithmic
terms for the steep ends and tanh steps for the plateaus and staging features of
graphite and LFP. Being linear in its coefficients, a curve is fitted to reference data
by least squares (:func:`fit_ocv`) and evaluated fast from a uniform table
(:meth:`OcvCurve.table`), which is what the simulator's kernel interpolates.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

__all__ = ["OcvCurve", "ocv_basis", "fit_ocv", "N_COEFFS"]

_CHEB_DEGREE = 8
_LOG_OFFSET = 0.02
_TANH_KNOTS = tuple(round(0.1 * i, 1) for i in range(1, 10))
_TANH_WIDTH = 0.05
#: Number of coefficients of a curve.
N_COEFFS = _CHEB_DEGREE + 1 + 2 + len(_TANH_KNOTS)


def ocv_basis(soc: npt.ArrayLike) -> npt.NDArray[np.float64]:
    """Basis matrix, shape ``(len(soc), N_COEFFS)``, for ``soc`` in [0, 1]."""
    s = np.asarray(soc, dtype=np.float64)
    z = 2.0 * s - 1.0
    cols = list(np.polynomial.chebyshev.chebvander(z, _CHEB_DEGREE).T)
    cols.append(np.log(s + _LOG_OFFSET))
    cols.append(np.log(1.0 + _LOG_OFFSET - s))
    cols.extend(np.tanh((s - k) / _TANH_WIDTH) for k in _TANH_KNOTS)
    return np.stack(cols, axis=-1)


def fit_ocv(soc: npt.ArrayLike, voltage_v: npt.ArrayLike) -> OcvCurve:
    """Least-squares fit of an :class:`OcvCurve` to samples (``soc`` in [0, 1], V)."""
    b = ocv_basis(soc)
    coeffs, *_ = np.linalg.lstsq(b, np.asarray(voltage_v, dtype=np.float64), rcond=None)
    return OcvCurve(tuple(float(c) for c in coeffs))


@dataclass(frozen=True, slots=True)
class OcvCurve:
    """OCV(soc) in V as ``ocv_basis(soc) @ coeffs``."""

    coeffs: tuple[float, ...]

    def __post_init__(self) -> None:
        if len(self.coeffs) != N_COEFFS:
            raise ValueError(f"an OcvCurve needs {N_COEFFS} coefficients, got {len(self.coeffs)}")

    def __call__(self, soc: npt.ArrayLike) -> npt.NDArray[np.float64]:
        """OCV in V at ``soc`` (clipped to [0, 1])."""
        s = np.clip(np.asarray(soc, dtype=np.float64), 0.0, 1.0)
        return ocv_basis(s) @ np.asarray(self.coeffs)

    def table(self, points: int = 1001) -> npt.NDArray[np.float64]:
        """OCV in V on ``points`` uniformly spaced SOC values from 0 to 1."""
        return self(np.linspace(0.0, 1.0, points))
