"""Per-rule times from Snakemake benchmark files, and the wall-time estimates on N cores, on hand-checkable data."""

from __future__ import annotations

from pathlib import Path

import pytest

from eqdyn.benchmarks.rule_times import (
    JobTime,
    RuleTimesError,
    classify,
    comparison,
    lower_bound,
    main,
    packed_makespan,
    read_job_times,
    schedule_estimate,
    summarise,
)

HEADER = "s\th:m:s\tmax_rss\tmax_vms\tmax_uss\tmax_pss\tio_in\tio_out\tmean_load\tcpu_time\n"


def write_benchmark(folder: Path, relative: str, seconds: float, cpu: float | None = None) -> None:
    path = folder / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    cpu = seconds if cpu is None else cpu
    path.write_text(HEADER + f"{seconds}\t0:00:00\t1\t1\t1\t1\t0\t0\t99\t{cpu}\n")


def study(folder: Path) -> Path:
    """data (10 s) -> four training jobs (40, 30, 20, 10 s) -> an efficiency benchmark holding every core (5 s) and
    two decompositions (6, 4 s) -> two figures (1 s each)."""
    write_benchmark(folder, "data/acquire.tsv", 10)
    for name, seconds in (("a", 40), ("b", 30), ("c", 20), ("d", 10)):
        write_benchmark(folder, f"train/{name}.tsv", seconds)
    write_benchmark(folder, "analysis/efficiency.tsv", 5, cpu=9)
    write_benchmark(folder, "analysis/decomposition/a.tsv", 6)
    write_benchmark(folder, "analysis/decomposition/b.tsv", 4)
    write_benchmark(folder, "figures/equiv_percent.tsv", 1)
    write_benchmark(folder, "figures/claims.tsv", 1)
    return folder


def test_files_are_named_by_their_rule() -> None:
    assert classify("train/flow_matching-transformer.tsv") == ("train", 5)
    assert classify("figures/robustness.tsv") == ("figure_robustness", 7)
    assert classify("figures/claims.tsv") == ("claims", 7)
    assert classify("analysis/hessian_stability/x.tsv") == ("hessian_stability", 6)
    with pytest.raises(RuleTimesError, match="no rule writes"):
        classify("elsewhere/x.tsv")


def test_longest_first_packing() -> None:
    assert packed_makespan([40, 30, 20, 10], 2) == 50  # {40, 10} and {30, 20}
    assert packed_makespan([40, 30, 20, 10], 1) == 100
    assert packed_makespan([40, 30, 20, 10], 16) == 40
    assert packed_makespan([], 4) == 0


def test_estimates_on_a_constructed_study(tmp_path: Path) -> None:
    jobs = read_job_times(study(tmp_path))
    assert len(jobs) == 10
    # stages: data 10; training 50 on 2 cores; analyses: efficiency alone 5 + decompositions 6; figures 1
    assert schedule_estimate(jobs, 2) == pytest.approx(10 + 50 + 5 + 6 + 1)
    assert schedule_estimate(jobs, 16) == pytest.approx(10 + 40 + 5 + 6 + 1)
    # work: 10 + 100 + 5*cores + 10 + 2; chain: 10 + 40 + 6 + 1
    assert lower_bound(jobs, 2) == pytest.approx((122 + 10) / 2)
    assert lower_bound(jobs, 16) == pytest.approx(57)
    for cores in (1, 2, 8, 16):
        assert lower_bound(jobs, cores) <= schedule_estimate(jobs, cores) + 1e-9
    train = next(row for row in summarise(jobs) if row.rule == "train")
    assert (train.jobs, train.seconds, train.longest) == (4, 100, 40)
    assert summarise(jobs)[0].rule == "train"  # largest total first


def test_report_and_bad_input(tmp_path: Path) -> None:
    out = tmp_path / "times.md"
    main(["--benchmarks", str(study(tmp_path / "bench")), "--cores", "2", "16", "--out", str(out)])
    text = out.read_text()
    assert "| `train` | 4 | 1.7 |" in text and "| 16 | 0.9 | 1.0 |" in text
    (tmp_path / "empty").mkdir()
    with pytest.raises(SystemExit, match="no benchmark files"):
        main(["--benchmarks", str(tmp_path / "empty")])
    (tmp_path / "bad" / "train").mkdir(parents=True)
    (tmp_path / "bad" / "train" / "x.tsv").write_text("not\ta benchmark\n")
    with pytest.raises(SystemExit, match=r"x.tsv: not a Snakemake benchmark file"):
        main(["--benchmarks", str(tmp_path / "bad")])


def test_job_time_exclusivity() -> None:
    assert JobTime("analysis/efficiency.tsv", "efficiency_benchmark", 6, 1.0).exclusive
    assert not JobTime("train/a.tsv", "train", 5, 1.0).exclusive


def test_comparison_pairs_jobs_by_path_and_names_the_unpaired(tmp_path: Path) -> None:
    before = study(tmp_path / "before")
    after = tmp_path / "after"
    write_benchmark(after, "data/acquire.tsv", 10)
    for name, seconds in (("a", 20), ("b", 15), ("c", 20)):  # d not run after; e only after
        write_benchmark(after, f"train/{name}.tsv", seconds)
    write_benchmark(after, "train/e.tsv", 99)
    text = comparison(read_job_times(before), read_job_times(after), "before", "after")
    rows = {line.split(" | ")[0].strip("| `"): line for line in text.splitlines() if line.startswith("| `")}
    assert "| 3 | 1.5 | 0.9 | 1.64x |" in rows["train"]  # (40 + 30 + 20) / (20 + 15 + 20), e and d left out
    assert "| 1 | 0.2 | 0.2 | 1.00x |" in rows["data_acquire"]
    assert "| 40.0 | 20.0 | 2.00x |" in rows["train/a.tsv"]
    assert "`train/d.tsv`, `train/e.tsv`" in text and "not compared" in text
    with pytest.raises(RuleTimesError, match="share no job"):
        comparison(read_job_times(before), [JobTime("x/y.tsv", "train", 5, 1.0)], "before", "other")


def test_cli_compares_two_studies(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    before, after = study(tmp_path / "before"), study(tmp_path / "after")
    main(["--benchmarks", str(after), "--vs", str(before), "--out", str(tmp_path / "compare.md")])
    assert "| total | 10 | 2.1 | 2.1 | 1.00x |" in (tmp_path / "compare.md").read_text()
