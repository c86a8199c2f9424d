"""The README's commands and Python example stay true."""

import ast
import re
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text(encoding="utf-8")


def test_readme_starts_with_the_two_make_commands_and_ci_uses_the_test_one():
    first_block = re.search(r"```bash\n(.*?)```", README, re.S).group(1)
    commands = [ln.split("#")[0].strip() for ln in first_block.splitlines() if ln.strip()]
    assert commands == ["make run", "make test"]
    assert "make test" in (ROOT / ".ci" / "run").read_text()
    makefile = (ROOT / "Makefile").read_text()
    assert "runs/quickstart.toml" in makefile and "pytest" in makefile


def test_readme_python_example_runs(tmp_path):
    # run from a scratch copy of runs/ so that the example's out/readme.h5 never lands in the source tree
    code = re.search(r"```python\n(.*?)```", README, re.S).group(1)
    shutil.copytree(ROOT / "runs", tmp_path / "runs")
    proc = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "out" / "readme.h5").is_file()
    values = ast.literal_eval(proc.stdout.strip().splitlines()[-1])  # a printed list of floats
    assert len(values) == 3 and all(1.1 < v < 2.5 for v in values)
