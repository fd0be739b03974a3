"""The ``fleetcare`` command: every command and subcommand answers --help; errors are clear."""

from __future__ import annotations

import argparse
from importlib.metadata import entry_points
from pathlib import Path

import orjson
import pytest

from flows.cli.main import GROUP, build_parser, main


def _all_command_paths() -> list[list[str]]:
    parser = build_parser(sorted(entry_points(group=GROUP), key=lambda e: e.name))
    paths: list[list[str]] = []

    def walk(p: argparse.ArgumentParser, prefix: list[str]) -> None:
        for action in p._actions:
            if isinstance(action, argparse._SubParsersAction):
                for name, child in action.choices.items():
                    paths.append([*prefix, name])
                    walk(child, [*prefix, name])

    walk(parser, [])
    return paths


def test_the_expected_commands_are_registered() -> None:
    top = {path[0] for path in _all_command_paths()}
    assert {"edge", "sim", "broker", "ingest", "deadletter", "crm", "leads", "flows",
            "demo"} <= top


@pytest.mark.parametrize("path", _all_command_paths(), ids=" ".join)
def test_every_command_has_help(path: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main([*path, "--help"])
    assert exited.value.code == 0
    assert f"usage: fleetcare {' '.join(path)}" in capsys.readouterr().out


def test_missing_config_is_a_clear_error(tmp_path: Path,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["edge", "run", "--config", str(tmp_path / "nope.toml")])
    assert code == 1
    assert "config file" in capsys.readouterr().err


def test_invalid_edge_setting_names_the_key(tmp_path: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "edge.toml"
    config.write_text('vehicle_id = "V1"\nbatch_signals = -5\n')
    assert main(["edge", "run", "--config", str(config)]) == 1
    err = capsys.readouterr().err
    assert "batch_signals" in err and "invalid edge configuration" in err


@pytest.mark.broker
def test_sim_run_prints_a_json_summary_last(broker_url: str, tmp_path: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    # No ingest here, so no receipts: the broker's PUBACK empties the spools.
    code = main(["sim", "run", "--broker", broker_url, "--vehicles", "2", "--days", "3",
                 "--snapshot-s", "0.2", "--spool-dir", str(tmp_path), "--no-receipts"])
    assert code == 0
    summary = orjson.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["vehicles"] == 2 and summary["days"] == 3
    assert summary["frames_read"] == summary["frames_sent"] > 0
    assert summary["signals_spooled"] > 0
    assert summary["messages_undelivered"] == summary["messages_receipted"] == 0
