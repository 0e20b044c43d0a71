"""Every stage answers --help with every option documented."""

from __future__ import annotations

import re

import pytest

from training.run import build_parser

COMMANDS = ["pretrain", "finetune", "evaluate", "pipeline", "export"]


@pytest.mark.parametrize("command", COMMANDS)
def test_every_option_is_documented(command: str) -> None:
    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command").choices[command]  # type: ignore[attr-defined]
    for action in sub._actions:
        assert action.help, f"{command} {action.option_strings} has no help"
    text = sub.format_help()
    assert "--help" in text


def test_help_through_the_command_line(run_cli) -> None:  # type: ignore[no-untyped-def]
    for command in COMMANDS:
        assert command in build_parser().format_help()
    done = run_cli("finetune", "--help")
    assert done.returncode == 0, done.stderr
    assert re.search(
        r"--optimizer \{adamw,sgd\}\s+adamw, or sgd with momentum \(paper\) "
        r"\(default: sgd\)",
        done.stdout,
    )
    assert "--depth" in done.stdout and "--config FILE" in done.stdout


def test_bad_option_value_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        build_parser().parse_args(["pretrain", "--optimizer", "lamb"])
    assert exited.value.code == 2 and "invalid choice: 'lamb'" in capsys.readouterr().err
