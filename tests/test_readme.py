"""The README cannot rot: every ```bash block runs (offline, empty weight caches) unless its first line says
``# (not run by the README test: <reason>)``; the Python API names it shows exist."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"
SKIP = "# (not run by the README test:"
OUT_DIR = "srmetrics-demo"  # the one (gitignored) folder the quickstart writes into


def bash_blocks() -> list[str]:
    return re.findall(r"```bash\n(.*?)```", README.read_text(), flags=re.S)


def test_readme_has_install_and_test_sections() -> None:
    text = README.read_text()
    assert '## Install' in text and 'pip install -e ".[test]"' in text
    assert "## Tests" in text and "\npytest\n" in text
    assert "srmetrics demo" in text


def test_every_skipped_block_says_why() -> None:
    for block in bash_blocks():
        if block.startswith(SKIP):
            assert block.splitlines()[0].rstrip().endswith(")"), block.splitlines()[0]


@pytest.mark.slow
def test_readme_shell_examples_run(tmp_path: Path) -> None:
    env = {**os.environ, "CLIPSCORE_SR_OFFLINE": "1", "HF_HUB_OFFLINE": "1", "TORCH_HOME": str(tmp_path / "torch"),
           "HF_HOME": str(tmp_path / "hf"), "CLIPSCORE_SR_CACHE": str(tmp_path / "cache"), "OMP_NUM_THREADS": "1"}
    bindir = str(Path(sys.executable).parent)
    env["PATH"] = bindir + os.pathsep + env.get("PATH", "")
    work = tmp_path / "work"  # a stand-in for the repository root the user runs the quickstart in
    work.mkdir()
    ran = 0
    for block in bash_blocks():
        if block.startswith(SKIP):
            continue
        script = block.replace("torchrun ", f"{sys.executable} -m torch.distributed.run --master-port 29533 ")
        proc = subprocess.run(["bash", "-euo", "pipefail", "-c", script], cwd=work, env=env,
                              capture_output=True, text=True, timeout=600)
        assert proc.returncode == 0, f"README block failed:\n{block}\n--- stderr ---\n{proc.stderr[-3000:]}"
        ran += 1
    assert ran >= 5
    # everything lands in the one folder the README names (gitignored), nothing in the repository root
    assert sorted(p.name for p in work.iterdir()) == [OUT_DIR]
    for name in ("results.csv", "summary.csv", "agreement-3.csv", "figure3-3.png", "nearest.json", "dist.csv",
                 "montage.png", "montage-bicubic.png", "compare.png", "summary-methods.csv"):
        assert (work / OUT_DIR / name).stat().st_size > 0, name


def test_quickstart_output_folder_is_gitignored() -> None:
    ignored = (README.parent / ".gitignore").read_text().split()
    assert f"/{OUT_DIR}/" in ignored and f"--out {OUT_DIR}" in README.read_text()


def test_training_examples_name_the_run_folders_the_configs_write() -> None:
    """`runs/...` folders in README commands (figure7, generate, export-generator) are the output_dir of a
    shipped config, and every config path a README command names exists."""
    import yaml

    root = README.parent
    configs = {p.name: yaml.safe_load(p.read_text()) for p in (root / "baselines" / "configs").glob("*.yaml")}
    run_dirs = {c["output_dir"] for c in configs.values()}
    texts = [README.read_text(), (root / "reports" / "README.md").read_text()]
    blocks = [b for t in texts for b in re.findall(r"```bash\n(.*?)```", t, flags=re.S)]
    named_runs = {m for b in blocks for m in re.findall(r"\b(runs/[\w.-]+)", b)}
    # configs written inline by a README block (cat > x.yaml <<'EOF' ... output_dir: ...) count as shipped
    run_dirs |= {m for b in blocks for m in re.findall(r"^output_dir:\s*\S*?(runs/[\w.-]+)", b, flags=re.M)}
    named_configs = {m for b in blocks for m in re.findall(r"baselines/configs/([\w.-]+\.yaml)", b)}
    assert named_runs and named_configs
    assert named_runs <= run_dirs, f"README run folders no config writes: {sorted(named_runs - run_dirs)}"
    assert named_configs <= set(configs), f"README configs that do not exist: {sorted(named_configs - set(configs))}"


def test_python_api_names_exist() -> None:
    import clipscore_sr

    text = README.read_text()
    imported = re.findall(r"from clipscore_sr import ([\w, ]+)", text)
    names = {n.strip() for line in imported for n in line.split(",")}
    assert names and all(hasattr(clipscore_sr, n) for n in names), names
