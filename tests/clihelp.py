"""CLI helpers shared by the test modules."""

from __future__ import annotations

from click.testing import CliRunner

from gridflow.cli import main


def cli(*args: str):
    return CliRunner().invoke(main, list(args))


def assert_one_line_error(result, code: int = 2, prefix: str = "gridflow: error: ") -> str:
    """The CLI failed with ``code``: one line on stderr starting with ``prefix``, no traceback
    anywhere; returns that line."""
    assert result.exit_code == code, (result.exit_code, result.output)
    assert "Traceback" not in result.output and "Traceback" not in result.stderr
    lines = [ln for ln in result.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(prefix)
    return lines[0]
