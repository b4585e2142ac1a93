"""``bando board`` options that reach the writer's configuration."""

from __future__ import annotations

import argparse

import pytest

from display import board_cli
from display.board_writer import WriterConfig


def parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    board_cli.configure(parser)
    return parser.parse_args(list(argv))


def test_the_catch_up_threshold_is_a_flag() -> None:
    assert board_cli.config_from(parse()).catchup_lag == WriterConfig.catchup_lag == 2_000
    assert board_cli.config_from(parse("--catchup-lag", "50000")).catchup_lag == 50_000


@pytest.mark.parametrize("bad", ["0", "-3", "many"])
def test_a_threshold_below_one_is_refused(bad: str) -> None:
    with pytest.raises(SystemExit):
        parse("--catchup-lag", bad)
