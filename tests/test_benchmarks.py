"""Every benchmark script runs in its smallest configuration, so none can rot silently (a renamed option, a
moved helper, weights its checks now refuse). The numbers are not checked here: benchmarks print ratios for
the README and tests never assert timings. A new script must be added to SMALLEST."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
BENCH = REPO / "benchmarks"

#: script -> the arguments of its smallest configuration
SMALLEST: dict[str, list[str]] = {
    "bench_active.py": ["--reps", "1", "--methods", "4", "--scenes", "5", "--annotators", "3", "--per-cell", "1",
                        "--replay-reps", "1", "--real-reps", "1"],
    "bench_agreement.py": ["--judgements", "200", "--metrics", "2", "--bootstrap", "20", "--images", "20",
                           "--skip-e2e"],
    "bench_bomb.py": ["--side", "1500", "--bits", "8"],
    "bench_cli_startup.py": ["--repeats", "1"],
    "bench_clip.py": ["--pairs", "4", "--memory-pairs", "0", "--authors-pairs", "1", "--cache-pairs", "0"],
    "bench_clip_cpu.py": ["--models", "RN50", "--batch", "2", "--repeats", "1", "--no-compile"],
    "bench_consistency.py": ["--n", "4", "--size", "32", "--batch", "2", "--repeats", "1"],
    "bench_cpsnr.py": ["--batch", "2", "--size", "64", "--repeats", "1"],
    "bench_generators.py": ["--repeats", "1", "--sr3-steps", "1"],
    "bench_peers.py": ["--pairs", "2", "--size", "32", "--repeats", "1", "--threads", "1"],
    "bench_rank.py": ["--votes", "2000", "--methods", "4", "--scenes", "20", "--bootstrap", "10",
                      "--ref-resamples", "2", "--reliability-votes", "1000"],
    "bench_report.py": ["--pairs", "20", "--methods", "2", "--workers", "1"],
    "bench_scene.py": ["--sizes", "64", "--tile", "32", "--score-tiles", "1", "--rounds", "1"],
    "bench_score.py": ["--pairs", "4", "--size", "32", "--memory-pairs", "0"],
    "bench_study.py": ["--trials", "10", "--scenes", "5", "--size", "32", "--submissions", "10"],
    "bench_study_active.py": ["--methods", "3", "--scenes", "4", "--trials", "10", "--annotators", "2",
                              "--submissions", "10", "--size", "8", "--undo-every", "3"],
    "bench_train.py": ["--steps", "1", "--warmup", "0", "--batch", "2"],
}


def test_every_benchmark_has_a_smallest_configuration() -> None:
    scripts = {p.name for p in BENCH.glob("bench_*.py")}
    assert scripts - set(SMALLEST) == set(), f"add these to SMALLEST: {sorted(scripts - set(SMALLEST))}"


@pytest.mark.slow
@pytest.mark.parametrize("script", sorted(SMALLEST))
def test_benchmark_runs_in_its_smallest_configuration(script: str, tmp_path: Path) -> None:
    if not (BENCH / script).is_file():
        pytest.skip(f"{script} is not in this checkout")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "CLIPSCORE_SR_OFFLINE": "1", "HF_HUB_OFFLINE": "1",
           "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
           "TORCH_HOME": str(tmp_path / "torch"), "HF_HOME": str(tmp_path / "hf"),
           "CLIPSCORE_SR_CACHE": str(tmp_path / "cache")}
    res = subprocess.run([sys.executable, str(BENCH / script), *SMALLEST[script]], cwd=tmp_path, env=env,
                         capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, f"{script} failed:\n{res.stdout[-2000:]}\n{res.stderr[-3000:]}"
    assert res.stdout.strip(), f"{script} printed nothing"
