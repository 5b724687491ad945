"""Generated reference docs stay in step with the code."""

import subprocess
import sys
from pathlib import Path

from rftkit.config import defaults_markdown

DOCS = Path(__file__).parents[2] / "docs"


def test_config_reference_is_current():
    assert (DOCS / "config.md").read_text() == defaults_markdown(), "regenerate: rftkit config defaults --markdown > docs/config.md"


def test_cli_reference_is_current(tmp_path):
    generated = tmp_path / "cli.md"
    typer = Path(sys.executable).parent / "typer"
    subprocess.run([typer, "rftkit.cli", "utils", "docs", "--name", "rftkit", "--output", generated], check=True, capture_output=True)
    assert (DOCS / "cli.md").read_text() == generated.read_text(), "regenerate: typer rftkit.cli utils docs --name rftkit --output docs/cli.md"
