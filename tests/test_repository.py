"""The README's set-up commands and CI stay in step; repository-wide rules."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _setup_commands() -> list[str]:
    text = (ROOT / "README.md").read_text()
    return re.findall(r"```bash\n(.+?)\n```", text)[:2]


def test_readme_opens_with_two_setup_commands():
    score, test = _setup_commands()
    assert "constraints.txt" in score and "mpiqa score examples/" in score
    assert "constraints.txt" in test and "[dev]" in test and "pytest" in test


def test_ci_runs_the_readme_test_command():
    _, test = _setup_commands()
    ci_lines = (ROOT / ".ci" / "run").read_text().splitlines()
    assert test in ci_lines


def test_constraints_pin_the_cpu_torch():
    assert "torch==2.13.0" in (ROOT / "constraints.txt").read_text().splitlines()


def test_lower_layers_never_import_training_or_evaluation():
    # models, prompts, backbones and data sit below training and evaluation: a model must
    # load (checkpoints included) without the training code
    import ast
    from pathlib import Path

    package = Path(__file__).resolve().parents[1] / "src" / "mpiqa"
    offenders = []
    for layer in ("models", "prompts", "backbones", "data"):
        for path in (package / layer).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text())):
                names = []
                if isinstance(node, ast.Import):
                    names = [a.name for a in node.names]
                elif isinstance(node, ast.ImportFrom) and node.module:
                    names = [node.module]
                offenders += [
                    f"{path.relative_to(package)}: {n}"
                    for n in names
                    if n.startswith(("mpiqa.training", "mpiqa.evaluation"))
                ]
    assert offenders == []


def test_every_torch_load_refuses_code():
    """Checkpoints are loaded with ``weights_only=True`` (a pickle can run code), in the
    package and in the recipes alike, whatever torch's default of the day."""
    import ast

    offenders = []
    for folder in ("src", "recipes", "benchmarks"):
        for path in (ROOT / folder).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text())):
                if (
                    isinstance(node, ast.Call)
                    and isinstance(node.func, ast.Attribute)
                    and node.func.attr == "load"
                    and isinstance(node.func.value, ast.Name)
                    and node.func.value.id == "torch"
                ):
                    safe = any(
                        k.arg == "weights_only"
                        and isinstance(k.value, ast.Constant)
                        and k.value.value is True
                        for k in node.keywords
                    )
                    if not safe:
                        offenders.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    assert offenders == []


def test_shell_scripts_parse():
    """The recipes and benchmark scripts that no test runs whole are at least valid bash."""
    import subprocess

    root = Path(__file__).resolve().parent.parent
    scripts = sorted([*root.glob("recipes/*.sh"), *root.glob("benchmarks/*.sh"), root / ".ci/run"])
    assert len(scripts) >= 4
    for script in scripts:
        result = subprocess.run(["bash", "-n", str(script)], capture_output=True, text=True)
        assert result.returncode == 0, f"{script}: {result.stderr}"


def test_the_command_line_starts_without_scipy_or_matplotlib():
    # scipy.stats/signal and matplotlib cost seconds at start-up and only some commands
    # use them: `mpiqa score` must not pay for them (they are imported where used)
    import subprocess
    import sys

    code = (
        "import sys, mpiqa.cli.main; "
        "print(sorted(m for m in ('scipy.stats', 'scipy.signal', 'scipy.optimize', "
        "'matplotlib') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
