"""Time the BG/NBD fit of analytics.clv against lifetimes, and on a 1M-customer sample.

Run from the repository root::

    .venv/bin/python benchmarks/bench_clv.py [--customers 1000000] [--repeats 5]

Prints one JSON object:

``clv_fit_seconds``
    Median wall time of ``BetaGeoModel().fit`` on the CDNOW summary (2357 customers).
``lifetimes_fit_seconds``
    Median wall time of ``lifetimes.BetaGeoFitter().fit`` on the same data, or null when
    lifetimes cannot be imported (its fit also computes a Hessian; that is part of its cost).
``synthetic_fit_seconds``
    Median wall time of ``BetaGeoModel().fit`` on ``synthetic_customers`` customers drawn from
    BG/NBD at the CDNOW estimates (``synthetic_repeats`` runs).

Exits 1 when the CDNOW data (shipped by the ``lifetimes`` package) is not installed, and 2 when
our fit is slower than lifetimes'.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import statistics
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

# a standalone script: make `analytics` importable without installing the project
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from analytics.clv import BetaGeoModel  # noqa: E402

# Fader, Hardie & Lee (2005a), CDNOW, time in weeks
CDNOW_PARAMS = {"r": 0.243, "alpha": 4.414, "a": 0.793, "b": 2.426}


def cdnow_summary() -> pd.DataFrame | None:
    """Read lifetimes' CDNOW summary CSV without importing lifetimes (it may not import)."""
    spec = importlib.util.find_spec("lifetimes")
    if spec is None or spec.origin is None:
        return None
    path = Path(spec.origin).parent / "datasets" / "cdnow_customers_summary.csv"
    return pd.read_csv(path) if path.exists() else None


def simulate_bg_nbd(n: int, params: dict, t_low: float, t_high: float, seed: int = 0) -> pd.DataFrame:
    """Draw (frequency, recency, T) for ``n`` customers from BG/NBD, fully vectorised.

    Each customer gets an age ``T ~ U(t_low, t_high)``, a rate ``lambda ~ Gamma(r, 1/alpha)`` and
    a dropout probability ``p ~ Beta(a, b)``. Repeat purchases in ``(0, T]`` while alive are
    Poisson(lambda T); dropout happens after purchase ``N ~ Geometric(p)``, so the observed count
    is ``min(Poisson, N)`` and the last purchase time is the x-th of the Poisson arrivals, i.e.
    ``T * Beta(x, K - x + 1)`` (order statistic of K uniforms).
    """
    rng = np.random.default_rng(seed)
    age = rng.uniform(t_low, t_high, n)
    lam = rng.gamma(params["r"], 1.0 / params["alpha"], n)
    p = rng.beta(params["a"], params["b"], n)
    arrivals = rng.poisson(lam * age)
    x = np.minimum(arrivals, rng.geometric(p))
    recency = np.zeros(n)
    rep = x > 0
    recency[rep] = age[rep] * rng.beta(x[rep], arrivals[rep] - x[rep] + 1)
    return pd.DataFrame({"frequency": x, "recency": recency, "T": age})


def median_seconds(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def lifetimes_fit_seconds(data: pd.DataFrame, repeats: int) -> float | None:
    try:
        import lifetimes
    except Exception as exc:  # noqa: BLE001 - lifetimes 0.11 may fail on import in many ways with pandas 3
        print(f"lifetimes not importable ({type(exc).__name__}: {exc}); skipping it", file=sys.stderr)
        return None

    def fit():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # lifetimes warns on pandas/numpy deprecations
            lifetimes.BetaGeoFitter().fit(data["frequency"], data["recency"], data["T"])

    return median_seconds(fit, repeats)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5, help="timed runs per measurement (median)")
    parser.add_argument("--customers", type=int, default=1_000_000, help="size of the synthetic sample")
    parser.add_argument("--synthetic-repeats", type=int, default=3, help="timed runs on the synthetic sample")
    args = parser.parse_args(argv)

    cdnow = cdnow_summary()
    if cdnow is None:
        print("CDNOW data not found: pip install lifetimes==0.11.3 (test-only dependency)", file=sys.stderr)
        return 1
    freq, rec, age = cdnow["frequency"], cdnow["recency"], cdnow["T"]

    BetaGeoModel().fit(freq, rec, age)  # warm-up: imports, first-call overheads
    ours = median_seconds(lambda: BetaGeoModel().fit(freq, rec, age), args.repeats)
    theirs = lifetimes_fit_seconds(cdnow, args.repeats)

    synthetic = simulate_bg_nbd(args.customers, CDNOW_PARAMS, float(age.min()), float(age.max()))
    fitted = {}

    def fit_synthetic():
        fitted["params"] = (
            BetaGeoModel().fit(synthetic["frequency"], synthetic["recency"], synthetic["T"]).params_
        )

    synthetic_seconds = median_seconds(fit_synthetic, args.synthetic_repeats)

    report = {
        "clv_fit_seconds": round(ours, 6),
        "lifetimes_fit_seconds": None if theirs is None else round(theirs, 6),
        "synthetic_customers": args.customers,
        "synthetic_fit_seconds": round(synthetic_seconds, 4),
        "synthetic_true_params": CDNOW_PARAMS,
        "synthetic_fitted_params": {k: round(v, 4) for k, v in fitted["params"].items()},
    }
    print(json.dumps(report))
    if theirs is not None and ours > theirs:
        print(f"our fit ({ours:.4f}s) is slower than lifetimes ({theirs:.4f}s)", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
