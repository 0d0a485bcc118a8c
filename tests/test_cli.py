"""Tests for airctrl.cli: option placement, flag validation, one-line failures."""

from __future__ import annotations

import re
import socket
from collections.abc import Callable
from pathlib import Path

import pytest

from airctrl.cli import COMMAND_MODULES, main


@pytest.fixture()
def typo_config(tmp_path: Path) -> Path:
    path = tmp_path / "typo.yaml"
    path.write_text("detection:\n  max_face: 3\n", encoding="utf-8")
    return path


@pytest.mark.parametrize(
    "before", [True, False], ids=["before-command", "after-command"]
)
def test_config_option_works_on_either_side_of_the_command(
    typo_config: Path, capsys: pytest.CaptureFixture[str], before: bool
) -> None:
    option = ["--config", str(typo_config)]
    argv = [*option, "analyze", "x.jpg"] if before else ["analyze", *option, "x.jpg"]

    code = main(argv)

    err = capsys.readouterr().err
    assert code == 2
    assert (
        err.strip()
        == f"airctrl: error: {typo_config}: unknown key 'detection.max_face'"
    )


@pytest.mark.parametrize(
    ("argv", "key"),
    [
        (
            ["run", "--headless", "--source", "x.mp4", "--metrics-port", "70000"],
            "'metrics.port'",
        ),
        (["analyze", "--max-faces", "0", "x.jpg"], "'detection.max_faces'"),
        (["serve", "--port", "99999"], "'server.port'"),
        (["serve", "--workers", "0"], "'server.workers'"),
    ],
    ids=["metrics-port", "max-faces", "server-port", "workers"],
)
def test_bad_flag_value_names_the_setting(
    argv: list[str], key: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(argv)

    err = capsys.readouterr().err
    assert code == 2
    assert err.count("\n") == 1 and key in err and "command line" in err


def test_metrics_port_in_use_is_one_line(
    tmp_path: Path,
    sample_path: Callable[[str], Path],
    capsys: pytest.CaptureFixture[str],
) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        video = str(sample_path("single_face.mp4"))
        code = main(
            ["run", "--headless", "--source", video, "--metrics-port", str(port),
             "--output-dir", str(tmp_path)]
        )  # fmt: skip

    err = capsys.readouterr().err
    reason = f"cannot serve metrics on 127.0.0.1:{port}: Address already in use"
    assert code == 2
    assert err.strip() == f"airctrl: error: {reason}"


def test_output_dir_under_a_file_is_one_line(
    tmp_path: Path,
    sample_path: Callable[[str], Path],
    capsys: pytest.CaptureFixture[str],
) -> None:
    (tmp_path / "out").write_text("not a folder")

    code = main(["run", "--headless", "--source", str(sample_path("single_face.mp4")),
                 "--output-dir", str(tmp_path / "out" / "run")])  # fmt: skip

    err = capsys.readouterr().err
    assert code == 2
    assert err.strip().endswith("Not a directory") and err.count("airctrl: error:") == 1
    assert "Errno" not in err


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        pytest.param(
            ["analyze", "x.jpg", "--max-faces", "zero"],
            "airctrl: error: analyze: argument --max-faces: invalid int value: 'zero'",
            id="bad-int",
        ),
        pytest.param(
            ["analyze", "x.jpg", "--format", "xml"],
            "airctrl: error: analyze: argument --format: invalid choice: 'xml'",
            id="bad-choice",
        ),
        pytest.param(
            ["frobnicate"],
            "airctrl: error: argument COMMAND: invalid choice: 'frobnicate'",
            id="unknown-command",
        ),
    ],
)
def test_bad_flag_is_one_error_line_without_the_usage_block(
    capsys: pytest.CaptureFixture[str], argv: list[str], expected: str
) -> None:
    with pytest.raises(SystemExit) as exited:
        main(argv)

    err = capsys.readouterr().err
    assert exited.value.code == 2
    assert len(err.strip().splitlines()) == 1
    assert err.startswith(expected)


def _help_page(capsys: pytest.CaptureFixture[str], command: str) -> str:
    """Return ``airctrl [command] --help`` as one line of words."""
    with pytest.raises(SystemExit):
        main([command, "--help"] if command else ["--help"])
    return " ".join(capsys.readouterr().out.split())


@pytest.mark.parametrize(
    "command",
    ["", *(name.rsplit(".", 1)[-1] for name in COMMAND_MODULES)],
    ids=lambda command: command or "top-level",
)
def test_help_page_shows_each_default_once_and_never_none(
    capsys: pytest.CaptureFixture[str], command: str
) -> None:
    page = _help_page(capsys, command)

    assert "(default: None)" not in page
    assert not re.search(r"\(default:[^)]*\) \(default:", page)


def test_help_page_states_an_options_real_default(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert "--folds FOLDS cross-validation folds (default: 5)" in _help_page(
        capsys, "calibrate"
    )
