"""The `streamer` command itself: fast help, --version, help on every option, Ctrl-C."""

from __future__ import annotations

import argparse
import signal
import time

import pytest
from cli_helpers import cli_process, finish

from streamer.cli import COMMANDS, INTERRUPTED, build_parser, main



@pytest.mark.parametrize("argv", [["--help"], ["run", "--help"]])
def test_help_does_not_import_torch(argv):
    """`streamer --help` took 3.4 s: every subcommand module was imported, and with it torch."""
    code = ("import sys\nfrom streamer.cli import main\ntry:\n    main(%r)\nexcept SystemExit:\n    pass\n"
            "print('torch' in sys.modules)" % argv)
    process = cli_process("-c", code)
    out, err = process.communicate(timeout=120)
    assert process.returncode == 0, err
    assert "usage: streamer" in out
    assert out.strip().splitlines()[-1] == "False", "torch was imported to print the help"


def test_version(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["--version"])
    assert exit_.value.code == 0
    assert capsys.readouterr().out.startswith("streamer ")


@pytest.mark.parametrize("command", list(COMMANDS))
def test_every_option_says_what_it_does(command):
    parser = build_parser(command)
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices[command]
    silent = [a.option_strings or [a.dest] for a in sub._actions if not a.help]
    assert not silent, f"`streamer {command}` options without help text: {silent}"


def test_ctrl_c_during_start_up_is_one_line_and_130(checkpoint):
    """Ctrl-C while torch is imported or the model loads used to print a traceback."""
    code = ("import sys\nfrom streamer.cli import main\nprint('ready', flush=True)\n"
            f"sys.exit(main(['run', 'lavfi:testsrc', '--checkpoint', {str(checkpoint)!r}, '--device', 'cpu']))")
    process = cli_process("-c", code)
    assert process.stdout.readline().strip() == "ready"
    time.sleep(0.2)  # into main(): importing torch or loading the model, which take seconds
    process.send_signal(signal.SIGINT)
    out, err = finish(process, timeout=120)
    assert process.returncode == INTERRUPTED, err
    assert "Traceback" not in err
    assert err.strip().splitlines()[-1].startswith("streamer")
