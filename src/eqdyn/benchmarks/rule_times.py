"""Where a study's time went, per rule, from Snakemake's ``benchmark:`` files, and what it would take on more cores.

``python -m eqdyn.benchmarks.rule_times --benchmarks results/<study>/benchmarks --cores 2 8 16 --out times.md``
``python -m eqdyn.benchmarks.rule_times --benchmarks <after>/benchmarks --vs <before>/benchmarks --out compare.md``

Every rule of the workflow writes ``results/<study>/benchmarks/<its log path>.tsv`` (wall seconds ``s`` of its one
job, among others). This module sums them per rule and estimates the study's wall time on N cores from
the measured job times, in two ways that bracket it:

- **lower bound**: the larger of (total job-seconds / N) and the sum over stages of each stage's longest job
  (no schedule beats perfect packing, nor a stage's slowest job);
- **stage-by-stage schedule**: the stages (data, training, analyses, figures, ...) run one after another, and inside
  a stage the jobs are packed longest-first onto N single-core slots; a rule that holds every core (the efficiency
  benchmark) runs alone. Snakemake overlaps stages (an analysis starts when its run is trained), so the real wall
  time on N cores lies between the two.

Job times measured on one machine's cores under its load are what the estimate scales; it assumes each job keeps
its measured time on the larger machine (one thread per job, as the rules ask).

With ``--vs``, the same study's benchmark files from another commit (same config, same machine) are compared job by
job: per rule and per job, the time before, after, and the speed-up before / after, over the jobs both hold.
"""

from __future__ import annotations

import argparse
import csv
import heapq
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from eqdyn.io import atomic_path

logger = logging.getLogger(__name__)

# (benchmark sub-path prefix, rule, stage). Stages run in this order; the first matching prefix names the rule.
RULE_STAGES: tuple[tuple[str, str, int], ...] = (
    ("data/acquire", "data_acquire", 0),
    ("data/conformers_", "data_conformers", 1),
    ("data/dft_labels", "data_dft_labels", 1),
    ("data/geom_conformers", "data_geom_conformers", 1),
    ("data/labels_", "data_labels", 2),
    ("data/datasets", "data_datasets", 3),
    ("lr_sweep/", "lr_sweep", 4),
    ("train/", "train", 5),
    ("evaluation_rotations/", "evaluation_rotations", 5),
    ("analysis/decomposition/", "decompose_checkpoints", 6),
    ("analysis/gradients/", "gradient_analysis", 6),
    ("analysis/hessian/", "hessian_analysis", 6),
    ("analysis/hessian_stability/", "hessian_stability", 6),
    ("analysis/baseline/", "baseline_loss", 6),
    ("analysis/efficiency", "efficiency_benchmark", 6),
    ("analysis/performance", "performance_table", 6),
    ("figures/claims", "claims", 7),
    ("figures/performance", "performance_report", 7),
    ("figures/", "figure", 7),
    ("export/", "export_tables", 8),
)
# Rules whose job holds every core (threads: workflow.cores) so that its clock is not shared: it runs alone.
EXCLUSIVE_RULES = frozenset({"efficiency_benchmark", "performance_table"})


class RuleTimesError(ValueError):
    """A benchmark file that cannot be read or placed."""


@dataclass(frozen=True)
class JobTime:
    """One job's measured time: its benchmark file (relative to the benchmarks folder), rule, stage, wall seconds.
    (Snakemake's ``cpu_time`` is not kept: it samples the job's processes and misses most of a short job.)"""

    path: str
    rule: str
    stage: int
    seconds: float

    @property
    def exclusive(self) -> bool:
        return self.rule in EXCLUSIVE_RULES


def classify(relative: str) -> tuple[str, int]:
    """(rule, stage) of a benchmark file from its path under the benchmarks folder."""
    for prefix, rule, stage in RULE_STAGES:
        if relative.startswith(prefix):
            if rule == "figure":
                return f"figure_{Path(relative).stem}", stage
            return rule, stage
    raise RuleTimesError(f"{relative}: no rule writes a benchmark file there (known: {[p for p, _, _ in RULE_STAGES]})")


def read_job_times(folder: Path) -> list[JobTime]:
    """Every ``*.tsv`` under ``folder``; each has Snakemake's header and one row per repeat (the mean is kept)."""
    jobs = []
    for path in sorted(folder.rglob("*.tsv")):
        relative = path.relative_to(folder).as_posix()
        rule, stage = classify(relative)
        with open(path, newline="") as handle:
            rows = list(csv.DictReader(handle, delimiter="\t"))
        if not rows or "s" not in rows[0]:
            raise RuleTimesError(f"{path}: not a Snakemake benchmark file (no 's' column or no row)")
        try:
            seconds = sum(float(row["s"]) for row in rows) / len(rows)
        except ValueError as error:
            raise RuleTimesError(f"{path}: {error}") from None
        jobs.append(JobTime(relative, rule, stage, seconds))
    if not jobs:
        raise RuleTimesError(f"{folder}: no benchmark files (*.tsv); run the study first")
    return jobs


def packed_makespan(durations: Sequence[float], cores: int) -> float:
    """Longest-first list scheduling of single-core jobs onto ``cores`` slots: when the last one ends."""
    slots = [0.0] * max(1, min(cores, len(durations)))
    heapq.heapify(slots)
    for duration in sorted(durations, reverse=True):
        heapq.heappush(slots, heapq.heappop(slots) + duration)
    return max(slots) if durations else 0.0


def schedule_estimate(jobs: Sequence[JobTime], cores: int) -> float:
    """Stages one after another; within a stage the single-core jobs packed, the exclusive ones alone."""
    total = 0.0
    for stage in sorted({job.stage for job in jobs}):
        in_stage = [job for job in jobs if job.stage == stage]
        total += packed_makespan([j.seconds for j in in_stage if not j.exclusive], cores)
        total += sum(j.seconds for j in in_stage if j.exclusive)
    return total


def lower_bound(jobs: Sequence[JobTime], cores: int) -> float:
    """No schedule on ``cores`` cores finishes before the work divided by the cores, nor before the longest job of
    every stage has run (an exclusive job occupies every core)."""
    work = sum(job.seconds * (cores if job.exclusive else 1) for job in jobs)
    chain = sum(max(job.seconds for job in jobs if job.stage == stage) for stage in {job.stage for job in jobs})
    return max(work / cores, chain)


@dataclass(frozen=True)
class RuleSummary:
    rule: str
    jobs: int
    seconds: float
    longest: float


def summarise(jobs: Sequence[JobTime]) -> list[RuleSummary]:
    """Per rule, largest total first."""
    rules: dict[str, list[JobTime]] = {}
    for job in jobs:
        rules.setdefault(job.rule, []).append(job)
    rows = [
        RuleSummary(
            rule,
            len(group),
            sum(j.seconds for j in group),
            max(j.seconds for j in group),
        )
        for rule, group in rules.items()
    ]
    return sorted(rows, key=lambda row: -row.seconds)


def minutes(seconds: float) -> str:
    return f"{seconds / 60:.1f}"


def report(jobs: Sequence[JobTime], cores: Sequence[int], source: str) -> str:
    rows = summarise(jobs)
    total = sum(row.seconds for row in rows)
    lines = [
        f"Per-rule times of {len(jobs)} jobs, from the benchmark files in `{source}` (wall seconds of each job as it "
        "ran, one thread per job unless the rule holds every core).",
        "",
        "| rule | jobs | job-minutes | share | longest job (min) |",
        "|---|---|---|---|---|",
    ]
    # (no CPU column: Snakemake's sampled cpu_time gave 7.5 CPU-s for 30-45 s single-threaded conformer jobs)
    for row in rows:
        lines.append(
            f"| `{row.rule}` | {row.jobs} | {minutes(row.seconds)} | {100 * row.seconds / total:.1f} % | "
            f"{minutes(row.longest)} |"
        )
    lines.append(f"| total | {len(jobs)} | {minutes(total)} | 100 % | |")
    lines += [
        "",
        "Estimated wall time (minutes) on N cores from these job times: the real time lies between the lower bound "
        "and the stage-by-stage schedule (Snakemake overlaps stages).",
        "",
        "| cores | lower bound | stage-by-stage schedule |",
        "|---|---|---|",
    ]
    for count in cores:
        lines.append(f"| {count} | {minutes(lower_bound(jobs, count))} | {minutes(schedule_estimate(jobs, count))} |")
    return "\n".join(lines) + "\n"


def comparison(before: Sequence[JobTime], after: Sequence[JobTime], before_source: str, after_source: str) -> str:
    """Per rule and per job, before / after over the jobs (benchmark paths) both studies hold; jobs only one holds
    are named, never silently compared."""
    before_by_path = {job.path: job for job in before}
    after_by_path = {job.path: job for job in after}
    shared = sorted(before_by_path.keys() & after_by_path.keys())
    if not shared:
        raise RuleTimesError(f"{before_source} and {after_source} share no job: not the same study")
    lines = [
        f"Job times before (`{before_source}`) and after (`{after_source}`), over the {len(shared)} jobs both ran; "
        "speed-up = before / after (above 1: faster).",
        "",
        "| rule | jobs | before (min) | after (min) | speed-up |",
        "|---|---|---|---|---|",
    ]
    paired = [(before_by_path[path], after_by_path[path]) for path in shared]
    for row in summarise([job for _, job in paired]):
        pairs = [(b, a) for b, a in paired if a.rule == row.rule]
        before_seconds = sum(b.seconds for b, _ in pairs)
        after_seconds = sum(a.seconds for _, a in pairs)
        lines.append(
            f"| `{row.rule}` | {len(pairs)} | {minutes(before_seconds)} | {minutes(after_seconds)} | "
            f"{before_seconds / after_seconds:.2f}x |"
        )
    total_before = sum(b.seconds for b, _ in paired)
    total_after = sum(a.seconds for _, a in paired)
    lines.append(
        f"| total | {len(paired)} | {minutes(total_before)} | {minutes(total_after)} | "
        f"{total_before / total_after:.2f}x |"
    )
    lines += ["", "| job | rule | before (s) | after (s) | speed-up |", "|---|---|---|---|---|"]
    for b, a in sorted(paired, key=lambda pair: -pair[0].seconds):
        lines.append(f"| `{a.path}` | `{a.rule}` | {b.seconds:.1f} | {a.seconds:.1f} | {b.seconds / a.seconds:.2f}x |")
    unmatched = sorted(before_by_path.keys() ^ after_by_path.keys())
    if unmatched:
        lines += ["", "Jobs only one side ran (not compared): " + ", ".join(f"`{path}`" for path in unmatched) + "."]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--benchmarks", type=Path, required=True, help="results/<study>/benchmarks")
    parser.add_argument("--cores", type=int, nargs="+", default=[2, 8, 16])
    parser.add_argument("--out", type=Path, default=None, help="also write the report (markdown) here")
    parser.add_argument(
        "--vs", type=Path, default=None, help="the same study's benchmarks from another commit: compare (before)"
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        after = read_job_times(args.benchmarks)
        if args.vs is None:
            text = report(after, args.cores, str(args.benchmarks))
        else:
            text = comparison(read_job_times(args.vs), after, str(args.vs), str(args.benchmarks))
    except RuleTimesError as error:
        raise SystemExit(f"error: {error}") from None
    logger.info("%s", text)
    if args.out is not None:
        with atomic_path(args.out) as tmp:
            Path(tmp).write_text(text)


if __name__ == "__main__":
    main()
