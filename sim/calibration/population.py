"""Population parameters from per-device estimates: means, device-to-device spreads free
of per-device estimation noise, and the normal-theory standard errors of those spreads."""

from __future__ import annotations

import numpy as np


def _rel_spread_halves(a: np.ndarray, b: np.ndarray, mean: float) -> float:
    """Relative spread of the true per-device values: cov of independent halves / mean^2."""
    if len(a) < 2 or mean == 0:
        return 0.0
    return float(np.cov(a, b)[0, 1] / mean**2)


def population_values(e: dict[str, np.ndarray], idx: np.ndarray) -> dict[str, float]:
    """Population parameters from per-device estimates of the devices ``idx``."""
    m = {k: e[k][idx] for k in e}
    out = {name: float(m[name].mean()) for name in ("mu_push", "mu_pull", "sigma_push",
                                                    "sigma_pull")}
    out["v_th_volts"] = float(m["v_th"].mean())
    out["g_p_siemens"] = float(m["g_max"].mean())
    out["g_ap_siemens"] = float(m["g_min"].mean())
    out["read_noise_siemens"] = float(np.sqrt(m["read_var"].mean()))
    for name, parts in (("mu_spread", ("mu_push", "mu_pull")),
                        ("sigma_spread", ("sigma_push", "sigma_pull"))):
        rel = [_rel_spread_halves(m[p + "_a"], m[p + "_b"], out[p]) for p in parts]
        out[name] = float(np.sqrt(max(float(np.mean(rel)), 0.0)))
    out["v_th_spread"] = float(np.sqrt(max(
        _rel_spread_halves(m["v_th_a"], m["v_th_b"], out["v_th_volts"]), 0.0)))
    rel_g = [np.var(m["g_max"], ddof=1) / out["g_p_siemens"] ** 2,
             np.var(m["g_min"], ddof=1) / out["g_ap_siemens"] ** 2]
    out["g_spread"] = float(np.sqrt(np.mean(rel_g)))
    return out


def spread_stderr(e: dict[str, np.ndarray], values: dict[str, float]) -> dict[str, float]:
    """Normal-theory standard errors of the relative spreads (delta method)."""
    n = len(e["device"])
    if n < 3:
        return {}

    def var_rel_cov(a: np.ndarray, b: np.ndarray, mean: float) -> float:
        c = np.cov(a, b)
        return float((c[0, 0] * c[1, 1] + c[0, 1] ** 2) / ((n - 1) * mean**4))

    def se_of_root(spread: float, var_square: float) -> float:
        se_square = np.sqrt(var_square)
        root = float(np.sqrt(se_square))
        return min(se_square / (2 * spread), root) if spread > 0 else root

    out = {}
    for name, parts in (("mu_spread", ("mu_push", "mu_pull")),
                        ("sigma_spread", ("sigma_push", "sigma_pull"))):
        var = sum(var_rel_cov(e[p + "_a"], e[p + "_b"], values[p]) for p in parts) / 4
        out[name] = se_of_root(values[name], var)
    out["v_th_spread"] = se_of_root(
        values["v_th_spread"], var_rel_cov(e["v_th_a"], e["v_th_b"], values["v_th_volts"]))
    var_g = sum(2 * (np.var(e[k], ddof=1) / values[m] ** 2) ** 2 / (n - 1)
                for k, m in (("g_max", "g_p_siemens"), ("g_min", "g_ap_siemens"))) / 4
    out["g_spread"] = se_of_root(values["g_spread"], var_g)
    return out
