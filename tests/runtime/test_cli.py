"""The ``troupe`` command line: version, help, and errors that say what to fix."""

from __future__ import annotations

import re
import signal
import socket
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

from troupe import __version__
from troupe.cli import COMMANDS, build_parser, main

TARGETS = Path(__file__).resolve().parents[1] / "supervisors"


@pytest.fixture(autouse=True)
def targets_importable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(TARGETS))


def run_cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str]:
    code = main(list(argv))
    return code, capsys.readouterr().err


def test_version_through_python_m_troupe() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "troupe", "--version"], capture_output=True, text=True, timeout=30
    )
    assert result.returncode == 0
    assert result.stdout.strip() == f"troupe {__version__}"


def test_without_a_command_it_prints_help_and_fails(capsys: pytest.CaptureFixture[str]) -> None:
    code, err = run_cli(capsys)
    assert code == 2
    assert "run" in err and "commands" in err


def test_a_module_that_does_not_exist(capsys: pytest.CaptureFixture[str]) -> None:
    code, err = run_cli(capsys, "run", "no_such_package.workers:tree")
    assert code == 2
    assert "troupe run: error:" in err
    assert "no module named 'no_such_package'" in err
    assert "PYTHONPATH" in err


def test_a_process_spec_naming_a_missing_module_is_one_line(
    capsys: pytest.CaptureFixture[str],
) -> None:
    code, err = run_cli(capsys, "run", "process_tree_targets:missing_module")
    assert code == 2
    [line] = err.splitlines()
    assert line.startswith("troupe run: error: cannot import 'no_such_package.workers:build'")
    assert "no module named 'no_such_package'" in line


def test_a_broker_port_out_of_range_is_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    code, err = run_cli(capsys, "demo", "--broker", "redis://localhost:99999/0", "--orders", "1")
    assert code == 2
    [line] = err.splitlines()
    assert line.startswith("troupe demo: error: invalid setting ")
    assert "99999" in line


def test_an_attribute_that_does_not_exist_lists_the_trees_there(
    capsys: pytest.CaptureFixture[str],
) -> None:
    code, err = run_cli(capsys, "run", "process_tree_targets:nope")
    assert code == 2
    assert "cannot find 'nope' in module 'process_tree_targets'" in err
    assert "Worker" in err and "build" in err and "crash_on_start" in err


def test_an_attribute_that_is_not_a_tree(capsys: pytest.CaptureFixture[str]) -> None:
    code, err = run_cli(capsys, "run", "process_tree_targets:NOT_A_TREE")
    assert code == 2
    assert "'process_tree_targets:NOT_A_TREE' names an object of type int, not a tree" in err
    assert "build(system)" in err and "Actor subclass" in err


def test_a_path_without_attribute(capsys: pytest.CaptureFixture[str]) -> None:
    code, err = run_cli(capsys, "run", "process_tree_targets")
    assert code == 2
    assert "'package.module:attribute'" in err


def test_bad_option_values_are_usage_errors(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["run", "process_tree_targets:build", "--processes", "0"])
    assert exit_info.value.code == 2
    assert "must be at least 1" in capsys.readouterr().err


def test_run_options_reach_the_process_tree() -> None:
    from troupe.cli import tree_for
    from troupe.supervisors import RestartType, Strategy

    args = build_parser().parse_args(
        [
            "run",
            "process_tree_targets:build",
            "--processes=3",
            "--shutdown-timeout=2.5",
            "--restart=transient",
            "--strategy=one_for_all",
            "--max-restarts=7",
            "--within=9",
            "--backoff=0.25",
            "--log-level=debug",
        ]
    )
    tree = tree_for(args)
    (spec,) = tree.specs
    assert (spec.target, spec.count, spec.shutdown, spec.restart) == (
        "process_tree_targets:build",
        3,
        2.5,
        RestartType.TRANSIENT,
    )
    assert tree.strategy is Strategy.ONE_FOR_ALL
    assert (tree.intensity.max_restarts, tree.intensity.within) == (7, 9.0)
    assert tree.backoff.initial == 0.25
    assert tree.log_level == "DEBUG"
    assert [s.name for s in tree.status()] == ["build-0", "build-1", "build-2"]


def test_a_process_supervisor_target_runs_as_given(capsys: pytest.CaptureFixture[str]) -> None:
    import process_tree_targets

    from troupe.cli import tree_for

    args = build_parser().parse_args(["run", "process_tree_targets:pool"])
    assert tree_for(args) is process_tree_targets.pool
    code, err = run_cli(capsys, "run", "process_tree_targets:pool", "--processes=3")
    assert code == 2
    assert "is a ProcessSupervisor" in err and "count=" in err


def test_subcommands_plug_in_through_commands(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def add_hello(subcommands: object) -> None:
        hello = subcommands.add_parser("hello")  # type: ignore[attr-defined]
        hello.set_defaults(handler=lambda args: 5)

    monkeypatch.setattr("troupe.cli.COMMANDS", [*COMMANDS, add_hello])
    assert main(["hello"]) == 5


@pytest.mark.parametrize(
    ("extra", "addr"), [([], "127.0.0.1"), (["--metrics-addr=127.0.0.2"], "127.0.0.2")]
)
def test_metrics_port_serves_the_tree(extra: list[str], addr: str) -> None:
    command = [
        "troupe",
        "run",
        "process_tree_targets:build",
        "--processes=2",
        "--metrics-port=0",
        *extra,
    ]
    root = subprocess.Popen(
        [sys.executable, "-m", *command],
        cwd=TARGETS,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert root.stderr is not None
        url = None
        up = 0
        for line in root.stderr:
            found = re.search(rf"metrics at (http://{re.escape(addr)}:\d+/metrics)", line)
            url = url or (found.group(1) if found else None)
            up += " is up" in line
            if url and up == 2:
                break
        assert url is not None
        with urllib.request.urlopen(url, timeout=10) as response:
            body = response.read().decode()
        assert 'troupe_process_up{process="build-0"} 1.0' in body
        assert 'troupe_process_up{process="build-1"} 1.0' in body
        root.send_signal(signal.SIGTERM)
        root.communicate(timeout=20)
        assert root.returncode == 0
    finally:
        root.kill()


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--crash-every", "-1"], "argument --crash-every: must be zero or more, got -1"),
        (["--rate", "-5"], "argument --rate: must be zero or more, got -5"),
        (["--rate", "nan"], "argument --rate: must be zero or more, got nan"),
        (["--duplicates", "2"], "argument --duplicates: must be between 0.0 and 1.0, got 2"),
        (["--orders", "0"], "argument --orders: must be at least 1, got 0"),
        (["--orders", "ten"], "argument --orders: not a whole number: 'ten'"),
        (["--metrics-port", "99999"], "must be between -1 and 65535, got 99999"),
    ],
)
def test_demo_flags_out_of_range_are_usage_errors(
    flags: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["demo", *flags])
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--metrics-port", "70000"], "must be between 0 and 65535, got 70000"),
        (["--max-restarts", "-1"], "must be zero or more, got -1"),
        (["--within", "inf"], "must be zero or more, got inf"),
    ],
)
def test_run_flags_out_of_range_are_usage_errors(
    flags: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["run", "process_tree_targets:build", *flags])
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err


def help_text(capsys: pytest.CaptureFixture[str], command: str) -> str:
    with pytest.raises(SystemExit):
        main([command, "--help"])
    return " ".join(capsys.readouterr().out.split())


def test_help_shows_the_defaults(capsys: pytest.CaptureFixture[str]) -> None:
    demo = help_text(capsys, "demo")
    for default in ("600", "400.0", "0.1", "25", "memory://", "CRITICAL"):
        assert f"(default: {default})" in demo
    run = help_text(capsys, "run")
    assert "(default: 10.0)" in run and "(default: one_for_one)" in run
    assert "(default: None)" not in run and "(default: False)" not in demo


def test_a_metrics_port_in_use_is_one_line_naming_the_port(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        code, err = run_cli(capsys, "demo", "--metrics-port", str(port), "--orders", "1")
    assert code == 2
    assert err.splitlines() == [
        f"troupe demo: error: invalid setting 'metrics_port': cannot serve /metrics on "
        f"127.0.0.1:{port}: Address already in use"
    ]


def test_run_with_a_metrics_port_in_use_is_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        code, err = run_cli(capsys, "run", "process_tree_targets:build", f"--metrics-port={port}")
    assert code == 2
    assert err.splitlines() == [
        f"troupe run: error: --metrics-port {port}: cannot listen on 127.0.0.1:{port}: "
        "Address already in use"
    ]
