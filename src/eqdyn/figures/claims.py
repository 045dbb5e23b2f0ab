"""The claims table: each quantitative claim of the paper, this study's measurement and a verdict computed from the
analysis tables by fixed rules (never typed in).

    python -m eqdyn.figures.claims --decomposition results/<study>/analysis/decomposition/*.csv \
        --runs results/<study>/runs/*/run.json --manifests results/<study>/runs/*/manifest.json \
        [--hessian results/<study>/analysis/hessian/<run>.csv ...] [--gradients ...csv] [--efficiency ...csv] \
        --study default --configfiles config/config.yaml \
        --out-md results/<study>/claims.md --out-csv figures/claims.csv

Verdicts: "reproduced", "not reproduced", "inconclusive", "not tested" and "not tested at this scale" (the runs stop
before the step the claim is about); the Hessian claim's verdict also states the magnitude measured. The rules are
in :data:`RULES` and in the README. A table that is not given makes its claims "not tested".
"""

from __future__ import annotations

import argparse
import csv
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats

from eqdyn.figures.tables import Z95, RunInfo, read_csvs, read_decomposition, read_runs, series
from eqdyn.io import atomic_open

REPRODUCED = "reproduced"
NOT_REPRODUCED = "not reproduced"
INCONCLUSIVE = "inconclusive"
NOT_TESTED = "not tested"
NOT_AT_SCALE = "not tested at this scale"

THRESHOLD = 2.0  # percent
CLAIM_STEP = 10_000
PAPER_KAPPA_RATIO = 1000.0
TWIRL_TOLERANCE_SE = 3.0
SPEARMAN_ALPHA = 0.05

COLUMNS = ("id", "provenance", "claim", "measured", "value", "ci_low", "ci_high", "verdict", "rule", "runs",
           "study", "config")  # fmt: skip

RULES = {
    "equiv_2_percent": (
        "For every augmented (non-equivariant) base run and its seed sweeps, read 100 L_equiv/L_total at the last "
        "checkpoint at or before step 10,000, with its 95% interval (value ± 1.96 SE over held-out examples). "
        "Reproduced: every run reaches step 10,000 and every upper bound is ≤ 2%. Not reproduced: some run that "
        "reaches step 10,000 has a lower bound > 2%. Not tested at this scale: every run stops before step 10,000. "
        "Inconclusive: otherwise (an interval straddles 2%, or only some runs reach step 10,000)."
    ),
    "robust_size": "The 2% rule above, applied to the base runs swept over model size and their size sweeps.",
    "robust_dataset": "The 2% rule above, applied to the base runs swept over num_train_molecules and those sweeps.",
    "robust_optimizer": "The 2% rule above, applied to the base runs swept over the optimizer and those sweeps.",
    "hessian_direction": (
        "Per run in the Hessian table, at the last step with both losses: ratio r = kappa(L_mean)/kappa(L_equiv) for "
        "kappa_10 and kappa_100 (where present), 95% interval r·exp(±1.96·sqrt((se_m/kappa_m)² + (se_e/kappa_e)²)). "
        "Reproduced: every interval of every run lies above 1. Not reproduced: some interval lies below 1. "
        "Inconclusive: otherwise, or no standard errors. Not tested: no Hessian table."
    ),
    "hessian_1000x": (
        "The same ratio, force-field runs only. Direction reproduced, magnitude X: every interval lies above 1 "
        "(X = the ratio measured, to compare with the paper's ~1000x). Not reproduced: some interval lies below 1. "
        "Inconclusive: otherwise. Not tested: no Hessian table or no force-field run in it."
    ),
    "efficiency_gap": (
        "Per task, the augmented and the equivariant base run are compared at the largest compute both reach "
        "(core-hours = step × seconds_per_step × threads / 3600 on CPU, GPU-hours = step × seconds_per_step / 3600 "
        "on GPU), held-out L_total interpolated linearly in log(compute) between checkpoints. The gap holds in a "
        "task when the augmented loss is lower by more than 1.96 × the two SEs in quadrature. Reproduced: it holds "
        "in at least one task ('may reach lower loss'). Not reproduced: the equivariant loss is lower by that margin "
        "in every task. Inconclusive: otherwise. Not tested: no efficiency table."
    ),
    "gradient_parameter_relation": (
        "Per augmented base run with nonequivariant_parameter_sq_norm in its gradient table: Spearman rank "
        "correlation between that norm and held-out L_equiv over checkpoints after step 0 (descriptive: checkpoints "
        "of one trajectory are not independent). Reproduced: rho > 0 with p < 0.05 in every such run. "
        "Not reproduced: rho < 0 with p < 0.05 in some run. Inconclusive: otherwise. Not tested: no gradient table "
        "with that quantity."
    ),
    "test_time_twirling": (
        "At the last checkpoint of every augmented base run with twirled-loss rows, for every k with 1 < k < K "
        "(k = 1 and k = K equal the prediction by construction of the estimators): |measured − (L_mean + "
        "L_equiv/k)| ≤ 3 × sqrt(SE_measured² + SE_predicted²). Reproduced: all agree. Not reproduced: some differ "
        "by more. Inconclusive: a standard error is missing. Not tested: no run with 1 < k < K."
    ),
}


@dataclass
class Claim:
    id: str
    provenance: str
    claim: str
    measured: str
    value: float | None
    ci_low: float | None
    ci_high: float | None
    verdict: str
    rule: str
    runs: str
    study: str = ""
    config: str = ""


# ----------------------------------------------------------------------------------------------------------- 2%


@dataclass
class PercentReading:
    run: str
    reached: bool  # the run trained to at least CLAIM_STEP
    step: int  # checkpoint read (last <= CLAIM_STEP)
    value: float
    low: float
    high: float
    last_step: int
    last_value: float
    last_se: float
    first_below: int | None  # first checkpoint whose upper bound is <= THRESHOLD
    stays_below: int | None = None  # first checkpoint from which every upper bound is <= THRESHOLD


def percent_reading(table: pd.DataFrame, run: RunInfo) -> PercentReading | None:
    curve = series(table, run.name, "equiv_percent")
    if curve.empty:
        return None
    high = curve["value"] + Z95 * curve["stderr"]
    low = curve["value"] - Z95 * curve["stderr"]
    last_step = int(curve["step"].max())
    trained_to = max([last_step, *run.checkpoint_steps])
    at = curve[curve["step"] <= CLAIM_STEP].index[-1]
    below = curve.loc[high <= THRESHOLD, "step"]
    above = curve.loc[~(high <= THRESHOLD), "step"]
    after = curve.loc[curve["step"] > above.max(), "step"] if len(above) else curve["step"]
    last = curve.index[-1]
    return PercentReading(
        run=run.name, reached=trained_to >= CLAIM_STEP, step=int(curve.loc[at, "step"]),
        value=float(curve.loc[at, "value"]), low=float(low[at]), high=float(high[at]), last_step=last_step,
        last_value=float(curve.loc[last, "value"]), last_se=float(curve.loc[last, "stderr"]),
        first_below=int(below.iloc[0]) if len(below) else None,
        stays_below=int(after.iloc[0]) if len(after) else None,
    )  # fmt: skip


def percent_verdict(readings: Sequence[PercentReading]) -> str:
    """The 2% rule (RULES['equiv_2_percent'])."""
    if not readings:
        return NOT_TESTED
    reached = [r for r in readings if r.reached]
    if any(r.low > THRESHOLD for r in reached):
        return NOT_REPRODUCED
    if not reached:
        return NOT_AT_SCALE
    if len(reached) == len(readings) and all(r.high <= THRESHOLD for r in reached):
        return REPRODUCED
    return INCONCLUSIVE


def describe_percent(readings: Sequence[PercentReading]) -> str:
    parts = []
    for r in readings:
        text = f"{r.run}: {r.value:.3g}% [{r.low:.3g}, {r.high:.3g}] at step {r.step}"
        if r.step != r.last_step:
            text += f"; {r.last_value:.3g} ± {r.last_se:.2g}% at last step {r.last_step}"
        if r.first_below is None:
            text += "; upper bound never ≤ 2%"
        else:
            text += f"; upper bound ≤ 2% first at step {r.first_below}"
            if r.stays_below is not None and r.stays_below != r.first_below:
                text += f", at every checkpoint from step {r.stays_below}"
            elif r.stays_below is None:
                text += ", but above 2% again at the last checkpoint"
        if not r.reached:
            text += f" (trained to step {r.last_step} < {CLAIM_STEP})"
        parts.append(text)
    return " | ".join(parts)


def percent_claim(cid: str, provenance: str, statement: str, readings: list[PercentReading]) -> Claim:
    worst = max(readings, key=lambda r: r.high) if readings else None
    return Claim(
        id=cid, provenance=provenance, claim=statement,
        measured=describe_percent(readings) if readings else "no augmented run with a decomposition table",
        value=worst.value if worst else None, ci_low=worst.low if worst else None,
        ci_high=worst.high if worst else None, verdict=percent_verdict(readings), rule=RULES[cid],
        runs=" ".join(r.run for r in readings),
    )  # fmt: skip


def main_runs(runs: dict[str, RunInfo]) -> list[RunInfo]:
    """Augmented base runs and their seed sweeps."""
    bases = {r.name for r in runs.values() if r.is_base and not r.equivariant}
    return [r for r in runs.values() if r.name in bases or (r.sweep_factor == "seed" and r.base_run in bases
                                                             and not r.equivariant)]  # fmt: skip


def sweep_runs(runs: dict[str, RunInfo], factor: str) -> list[RunInfo]:
    """The runs of one sweep factor and the base runs they sweep around."""
    members = [r for r in runs.values() if r.sweep_factor == factor and not r.equivariant]
    bases = {r.base_run for r in members}
    return [runs[name] for name in sorted(bases) if name in runs] + members


def readings_for(table: pd.DataFrame, chosen: list[RunInfo]) -> list[PercentReading]:
    return [reading for run in chosen if (reading := percent_reading(table, run)) is not None]


# ------------------------------------------------------------------------------------------------------ Hessian


@dataclass
class KappaRatio:
    run: str
    kappa: str
    step: int
    ratio: float
    low: float
    high: float


def kappa_ratios(hessian: pd.DataFrame) -> list[KappaRatio]:
    out = []
    for run, rows in hessian.groupby("run", sort=False):
        for kappa in ("kappa_10", "kappa_100"):
            q = rows[rows["quantity"] == kappa]
            mean, equiv = q[q["loss"] == "mean"].set_index("step"), q[q["loss"] == "equiv"].set_index("step")
            steps = sorted(set(mean.index) & set(equiv.index))
            if not steps:
                continue
            step = steps[-1]
            km, ke = float(mean.loc[step, "value"]), float(equiv.loc[step, "value"])
            sm = pd.to_numeric(pd.Series([mean.loc[step, "stderr"]]), errors="coerce").iloc[0]
            se_ = pd.to_numeric(pd.Series([equiv.loc[step, "stderr"]]), errors="coerce").iloc[0]
            ratio = km / ke
            spread = np.sqrt((sm / km) ** 2 + (se_ / ke) ** 2)
            low, high = (ratio * np.exp(-Z95 * spread), ratio * np.exp(Z95 * spread)) if np.isfinite(spread) else (
                float("nan"), float("nan"))  # fmt: skip
            out.append(KappaRatio(str(run), kappa, int(step), ratio, float(low), float(high)))
    return out


def ratio_verdict(ratios: Sequence[KappaRatio]) -> str:
    if not ratios:
        return NOT_TESTED
    if any(np.isfinite(r.high) and r.high < 1 for r in ratios):
        return NOT_REPRODUCED
    if all(np.isfinite(r.low) and r.low > 1 for r in ratios):
        return REPRODUCED
    return INCONCLUSIVE


def _magnitude(value: float) -> str:
    return f"{value:,.0f}" if value >= 100 else f"{value:.3g}"


def describe_ratios(ratios: Sequence[KappaRatio]) -> str:
    return " | ".join(f"{r.run} {r.kappa} at step {r.step}: {r.ratio:.3g}x [{r.low:.3g}, {r.high:.3g}]"
                      for r in ratios)  # fmt: skip


def hessian_claims(hessian: pd.DataFrame | None, runs: dict[str, RunInfo]) -> list[Claim]:
    statement_a = "The loss landscape of L_equiv is smoother and better conditioned than that of L_mean."
    statement_s = "About 1000x lower Hessian condition number for L_equiv than for L_mean in force-field prediction."
    if hessian is None or hessian.empty:
        return [Claim("hessian_direction", "[A]", statement_a, "no Hessian table", None, None, None, NOT_TESTED,
                      RULES["hessian_direction"], ""),
                Claim("hessian_1000x", "[S]", statement_s, "no Hessian table", None, None, None, NOT_TESTED,
                      RULES["hessian_1000x"], "")]  # fmt: skip
    ratios = kappa_ratios(hessian)
    claims = []
    primary = min(ratios, key=lambda r: r.low if np.isfinite(r.low) else -np.inf) if ratios else None
    claims.append(Claim(
        "hessian_direction", "[A]", statement_a, describe_ratios(ratios) or "no kappa rows",
        primary.ratio if primary else None, primary.low if primary else None, primary.high if primary else None,
        ratio_verdict(ratios), RULES["hessian_direction"], " ".join(dict.fromkeys(r.run for r in ratios)),
    ))  # fmt: skip
    force = [r for r in ratios if r.run in runs and runs[r.run].task == "force_field"]
    verdict = ratio_verdict(force)
    if verdict == REPRODUCED:
        magnitudes = ", ".join(f"{r.kappa} {_magnitude(r.ratio)}x" for r in force)
        verdict = f"direction reproduced, magnitude {magnitudes} (paper ~{PAPER_KAPPA_RATIO:.0f}x)"
    primary = min(force, key=lambda r: r.low if np.isfinite(r.low) else -np.inf) if force else None
    claims.append(Claim(
        "hessian_1000x", "[S]", statement_s,
        describe_ratios(force) or "no force-field run in the Hessian table",
        primary.ratio if primary else None, primary.low if primary else None, primary.high if primary else None,
        verdict, RULES["hessian_1000x"], " ".join(dict.fromkeys(r.run for r in force)),
    ))  # fmt: skip
    return claims


# --------------------------------------------------------------------------------------------------- efficiency


def _interpolate(hours: np.ndarray, values: np.ndarray, at: float) -> float:
    return float(np.interp(np.log(at), np.log(hours), values))


def efficiency_claim(efficiency: pd.DataFrame | None, table: pd.DataFrame, runs: dict[str, RunInfo]) -> Claim:
    statement = "Per GPU-hour, non-equivariant models may reach lower test loss than equivariant ones."
    if efficiency is None or efficiency.empty:
        return Claim("efficiency_gap", "[A]", statement, "no efficiency table", None, None, None, NOT_TESTED,
                     RULES["efficiency_gap"], "")  # fmt: skip
    from eqdyn.figures.efficiency import compute_unit, loss_vs_hours

    unit = compute_unit(efficiency["device"])
    timed = set(efficiency["run"])
    outcomes, texts, used, best = [], [], [], None
    tasks = sorted({r.task for r in runs.values()})
    for task in tasks:
        base = [r for r in runs.values() if r.task == task and r.is_base and r.name in timed
                and not series(table, r.name, "total").empty]  # fmt: skip
        augmented = [r for r in base if not r.equivariant]
        equivariant = [r for r in base if r.equivariant]
        for a in augmented:
            for e in equivariant:
                ca, ce = loss_vs_hours(efficiency, table, a.name), loss_vs_hours(efficiency, table, e.name)
                if ca.empty or ce.empty:
                    continue
                budget = min(ca["hours"].max(), ce["hours"].max())
                if budget < max(ca["hours"].min(), ce["hours"].min()):
                    texts.append(f"{task}: no common compute range")
                    outcomes.append("none")
                    continue
                la = _interpolate(ca["hours"].to_numpy(), ca["value"].to_numpy(), budget)
                le = _interpolate(ce["hours"].to_numpy(), ce["value"].to_numpy(), budget)
                sa = _interpolate(ca["hours"].to_numpy(), ca["stderr"].to_numpy(), budget)
                se_ = _interpolate(ce["hours"].to_numpy(), ce["stderr"].to_numpy(), budget)
                margin = Z95 * np.sqrt(sa**2 + se_**2)
                difference = le - la  # > 0: the augmented model is better
                outcome = "gap" if difference > margin else ("reverse" if -difference > margin else "none")
                outcomes.append(outcome)
                used += [a.name, e.name]
                texts.append(
                    f"{task} at {budget:.3g} {unit}: {a.family} {la:.4g} ± {sa:.2g} vs {e.family} "
                    f"{le:.4g} ± {se_:.2g} (equivariant − augmented = {difference:.3g} ± {margin:.2g})"
                )
                if best is None or difference > best[0]:
                    best = (difference, difference - margin, difference + margin)
    if not outcomes:
        verdict = NOT_TESTED
    elif "gap" in outcomes:
        verdict = REPRODUCED
    elif all(o == "reverse" for o in outcomes):
        verdict = NOT_REPRODUCED
    else:
        verdict = INCONCLUSIVE
    return Claim("efficiency_gap", "[A]", statement, " | ".join(texts) or "no augmented/equivariant pair timed",
                 best[0] if best else None, best[1] if best else None, best[2] if best else None, verdict,
                 RULES["efficiency_gap"], " ".join(dict.fromkeys(used)))  # fmt: skip


# ----------------------------------------------------------------------------------------- gradients, twirling


def gradient_claim(gradients: pd.DataFrame | None, table: pd.DataFrame, runs: dict[str, RunInfo]) -> Claim:
    statement = (
        "Relations between relative equivariance error, gradients and parameters (tested here: held-out "
        "L_equiv rises with the squared norm of the non-equivariant part of the parameters)."
    )
    have = (gradients is not None and not gradients.empty
            and (gradients["quantity"] == "nonequivariant_parameter_sq_norm").any())  # fmt: skip
    if not have:
        return Claim("gradient_parameter_relation", "[A]", statement,
                     "no gradient table with nonequivariant_parameter_sq_norm", None, None, None, NOT_TESTED,
                     RULES["gradient_parameter_relation"], "")  # fmt: skip
    results, texts = [], []
    for run in sorted(set(gradients["run"])):
        info = runs.get(run)
        if info is None or info.equivariant or not info.is_base:
            continue
        norm = gradients[(gradients["run"] == run) & (gradients["quantity"] == "nonequivariant_parameter_sq_norm")]
        joined = norm[["step", "value"]].merge(series(table, run, "equiv"), on="step", suffixes=("_norm", "_equiv"))
        joined = joined[joined["step"] > 0]
        if len(joined) < 3:
            texts.append(f"{run}: fewer than 3 checkpoints")
            results.append((run, float("nan"), float("nan")))
            continue
        if joined["value_norm"].nunique() < 2 or joined["value_equiv"].nunique() < 2:
            texts.append(f"{run}: constant over checkpoints, no rank correlation")
            results.append((run, float("nan"), float("nan")))
            continue
        rho, p = stats.spearmanr(joined["value_norm"], joined["value_equiv"])
        results.append((run, float(rho), float(p)))
        texts.append(f"{run}: Spearman rho {rho:.3g} (p = {p:.2g}, {len(joined)} checkpoints)")
    if not results:
        verdict = NOT_TESTED
    elif any(rho < 0 and p < SPEARMAN_ALPHA for _, rho, p in results):
        verdict = NOT_REPRODUCED
    elif all(rho > 0 and p < SPEARMAN_ALPHA for _, rho, p in results):
        verdict = REPRODUCED
    else:
        verdict = INCONCLUSIVE
    weakest = min(results, key=lambda x: x[1] if np.isfinite(x[1]) else -np.inf) if results else None
    return Claim("gradient_parameter_relation", "[A]", statement, " | ".join(texts) or "no augmented base run",
                 weakest[1] if weakest else None, None, None, verdict, RULES["gradient_parameter_relation"],
                 " ".join(r for r, _, _ in results))  # fmt: skip


def twirling_claim(table: pd.DataFrame, runs: dict[str, RunInfo]) -> Claim:
    statement = (
        "Test-time twirling as a remedy: averaging k rotated predictions has expected loss L_mean + L_equiv / k."
    )
    checks, texts, used = [], [], []
    for run in sorted((r for r in runs.values() if r.is_base and not r.equivariant), key=lambda r: r.name):
        rows = table[(table["run"] == run.name) & table["quantity"].isin(["twirled_loss", "twirled_loss_predicted"])]
        if rows.empty:
            continue
        step = int(rows["step"].max())
        at = rows[rows["step"] == step]
        measured = at[at["quantity"] == "twirled_loss"].set_index("k")
        predicted = at[at["quantity"] == "twirled_loss_predicted"].set_index("k")
        k_max = measured.index.max()
        for k in measured.index:
            if k <= 1 or k >= k_max:
                continue
            difference = float(measured.loc[k, "value"] - predicted.loc[k, "value"])
            se = float(np.sqrt(measured.loc[k, "stderr"] ** 2 + predicted.loc[k, "stderr"] ** 2))
            z = abs(difference) / se if se > 0 else float("nan")
            checks.append(z)
            used.append(run.name)
            texts.append(f"{run.name} step {step} k={int(k)}: {measured.loc[k, 'value']:.4g} vs "
                         f"{predicted.loc[k, 'value']:.4g} ({z:.2f} SE)")  # fmt: skip
    if not checks:
        verdict = NOT_TESTED
    elif any(not np.isfinite(z) for z in checks):
        verdict = INCONCLUSIVE
    elif all(z <= TWIRL_TOLERANCE_SE for z in checks):
        verdict = REPRODUCED
    else:
        verdict = NOT_REPRODUCED
    worst = max(checks) if checks else None
    return Claim("test_time_twirling", "[A]", statement,
                 " | ".join(texts) or "no augmented run with 1 < k < K twirled-loss rows", worst, None, None,
                 verdict, RULES["test_time_twirling"], " ".join(dict.fromkeys(used)))  # fmt: skip


# ------------------------------------------------------------------------------------------------------- table


def build_claims(
    table: pd.DataFrame,
    runs: dict[str, RunInfo],
    hessian: pd.DataFrame | None = None,
    gradients: pd.DataFrame | None = None,
    efficiency: pd.DataFrame | None = None,
) -> list[Claim]:
    """Every claim with its measurement and computed verdict."""
    claims = [percent_claim(
        "equiv_2_percent", "[A]",
        "Non-equivariant models trained with rotation augmentation bring L_equiv to ≤ 2% of held-out loss within "
        "1k-10k training steps.", readings_for(table, main_runs(runs)))]  # fmt: skip
    for cid, provenance, factor, statement in (
        ("robust_size", "[A]/[S]", "size", "...robust to model size ([S] 1M-400M parameters)."),
        ("robust_dataset", "[A]/[S]", "num_train_molecules", "...robust to dataset size ([S] 500-1M samples)."),
        ("robust_optimizer", "[S]", "optimizer", "...robust to the optimizer."),
    ):
        chosen = sweep_runs(runs, factor)
        claim = percent_claim(cid, provenance, statement, readings_for(table, chosen))
        if factor in ("size", "num_train_molecules") and chosen:
            claim.measured = f"{_scope(chosen, factor)}; {claim.measured}"
        if not chosen:
            claim.measured = f"no {factor} sweep in this study"
        claims.append(claim)
    claims += hessian_claims(hessian, runs)
    claims.append(efficiency_claim(efficiency, table, runs))
    claims.append(gradient_claim(gradients, table, runs))
    claims.append(twirling_claim(table, runs))
    return claims


def _scope(chosen: list[RunInfo], factor: str) -> str:
    if factor == "size":
        values = [r.parameters for r in chosen if r.parameters]
        return f"tested {min(values):,}-{max(values):,} parameters" if values else "parameter counts unknown"
    values = [r.train_molecules for r in chosen if r.train_molecules]
    return f"tested {min(values):,}-{max(values):,} training molecules" if values else "dataset sizes unknown"


def _format(value: float | None) -> str:
    return "" if value is None or not np.isfinite(value) else f"{value:.6g}"


def write_outputs(claims: list[Claim], out_md: Path, out_csv: Path, study: str, configs: Sequence[str]) -> None:
    config = " ".join(configs)
    for claim in claims:
        claim.study, claim.config = study, config
    with atomic_open(out_csv) as handle:
        writer = csv.DictWriter(handle, fieldnames=COLUMNS)
        writer.writeheader()
        for claim in claims:
            row = asdict(claim)
            writer.writerow({**row, **{k: _format(row[k]) for k in ("value", "ci_low", "ci_high")}})
    lines = [f"# Claims of arXiv 2512.02303 checked by study `{study}`", "",
             f"Config: `{config}`. Verdicts are computed from the analysis tables by the rules below; "
             "[A] = the paper's abstract, [S] = a published one-page summary (not the paper itself).", "",
             "| id | source | claim | verdict | measured |", "|---|---|---|---|---|"]  # fmt: skip
    for c in claims:
        lines.append(f"| {c.id} | {c.provenance} | {c.claim} | **{c.verdict}** | {_md(c.measured)} |")
    lines += ["", "## Rules", ""] + [f"- **{c.id}**: {c.rule}" for c in claims] + [""]
    with atomic_open(out_md) as handle:
        handle.write("\n".join(lines))


def _md(text: str) -> str:
    return text.replace("|", "<br>").replace("\n", " ")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--decomposition", type=Path, nargs="+", required=True, help="decomposition tables (CSV)")
    parser.add_argument("--runs", type=Path, nargs="+", required=True, help="run.json of every run")
    parser.add_argument("--manifests", type=Path, nargs="+", required=True, help="manifest.json of every run")
    parser.add_argument("--hessian", type=Path, nargs="*", default=None, help="Hessian tables (absent: not tested)")
    parser.add_argument("--gradients", type=Path, nargs="*", default=None, help="gradient tables")
    parser.add_argument("--efficiency", type=Path, default=None, help="efficiency table")
    parser.add_argument("--study", required=True, help="study name (config key `study`)")
    parser.add_argument("--configfiles", nargs="+", required=True, help="config file(s) of the study")
    parser.add_argument("--out-md", type=Path, required=True)
    parser.add_argument("--out-csv", type=Path, required=True)
    args = parser.parse_args(argv)
    claims = build_claims(
        read_decomposition(args.decomposition), read_runs(args.runs, args.manifests),
        hessian=read_csvs(args.hessian) if args.hessian else None,
        gradients=read_csvs(args.gradients) if args.gradients else None,
        efficiency=read_csvs([args.efficiency]) if args.efficiency else None,
    )  # fmt: skip
    write_outputs(claims, args.out_md, args.out_csv, args.study, args.configfiles)
    for claim in claims:
        print(f"{claim.id}: {claim.verdict}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
