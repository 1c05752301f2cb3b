"""The multi-process runtime: environment parsing, the split and gather, the launcher's failures."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from verification.core import process as PR
from verification.core.errors import DistributedConfigError
from verification.engine import distributed as D
from verification.io.report import strip_timing

WORKER_DIR = str(Path(__file__).parent)


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([WORKER_DIR, str(Path(__file__).parents[2]), env.get("PYTHONPATH", "")])
    return env


def test_no_environment_means_one_process():
    assert PR.requested({}) is None


def test_auto_detection_is_opt_in():
    assert PR.requested({PR.ENV_AUTO: "auto"}) == {}


def test_explicit_environment_binds_loopback():
    kwargs = PR.requested({PR.ENV_COORDINATOR: "127.0.0.1:1234", PR.ENV_NUM_PROCESSES: "2", PR.ENV_PROCESS_ID: "1",
                          PR.ENV_LOOPBACK: "1", PR.ENV_INIT_TIMEOUT: "7"})
    assert kwargs == {"coordinator_address": "127.0.0.1:1234", "num_processes": 2, "process_id": 1,
                      "initialization_timeout": 7, "coordinator_bind_address": "127.0.0.1:1234"}


@pytest.mark.parametrize("env, message", [
    ({PR.ENV_COORDINATOR: "127.0.0.1:1"}, "ICLKD_NUM_PROCESSES, ICLKD_PROCESS_ID"),
    ({PR.ENV_COORDINATOR: "h:1", PR.ENV_NUM_PROCESSES: "0", PR.ENV_PROCESS_ID: "0"}, ">= 1"),
    ({PR.ENV_COORDINATOR: "h:1", PR.ENV_NUM_PROCESSES: "2", PR.ENV_PROCESS_ID: "2"}, r"\[0, 2\)"),
    ({PR.ENV_COORDINATOR: "h:1", PR.ENV_NUM_PROCESSES: "two", PR.ENV_PROCESS_ID: "0"}, "integer"),
    ({PR.ENV_COORDINATOR: "nohostport", PR.ENV_NUM_PROCESSES: "2", PR.ENV_PROCESS_ID: "0"}, "host:port"),
])
def test_malformed_environment_is_a_clear_error(env, message):
    with pytest.raises(DistributedConfigError, match=message):
        PR.requested(env)


def test_launch_rejects_bad_arguments():
    with pytest.raises(ValueError, match="num_processes"):
        D.launch(0, ["verify"])
    with pytest.raises(ValueError, match="command is empty"):
        D.launch(2, [])


def test_one_process_map_is_a_loop():
    assert D.distributed_map(lambda x: x + 1, [1, 2, 3]) == [2, 3, 4]


def test_two_processes_split_gather_and_listen_on_loopback_only(capfd):
    status = D.launch(2, ["3"], module="_distributed_worker", env=_env(), init_timeout_s=60)
    out = capfd.readouterr().out
    assert status == 3, out  # process 0's own exit status is passed through
    assert "RESULTS [(0, 0), (1, 1), (2, 4), (3, 9), (4, 16), (5, 25), (6, 36)] COMPUTED_BY [0, 1]" in out
    assert "LISTENING" in out


def test_a_peer_that_never_starts_is_a_clear_error_not_a_hang(capfd):
    started = time.monotonic()
    status = D.launch(2, ["0"], module="_distributed_worker", env=_env(), init_timeout_s=2, start_ranks=[0])
    elapsed = time.monotonic() - started
    err = capfd.readouterr().err
    assert status == D.EXIT_LAUNCH_FAILED
    assert elapsed < 60
    lines = [line for line in err.splitlines() if line.startswith("iclkd launch:")]
    assert len(lines) == 1 and "process(es) 1 never started" in lines[0], err
    assert "Check failure stack trace" not in err  # the abort is summarised, not dumped


def test_two_process_verify_gives_the_one_process_report(tmp_path, capfd):
    import json
    import subprocess
    import sys

    args = ["verify", "--profile", "smoke", "--only", "lemma-eta", "thm-linear", "--no-progress"]
    one = subprocess.run([sys.executable, "-m", "verification", *args, "--json", str(tmp_path / "one.json")],
                         env=_env(), capture_output=True, text=True, timeout=300)
    assert one.returncode == 0, one.stderr
    status = D.launch(2, [*args, "--json", str(tmp_path / "two.json")], env=_env(), init_timeout_s=120)
    out = capfd.readouterr().out
    assert status == 0
    assert "lemma-eta" in out and "thm-linear" in out  # process 0's table is streamed
    first = json.loads((tmp_path / "one.json").read_text())
    second = json.loads((tmp_path / "two.json").read_text())
    assert strip_timing(first) == strip_timing(second)
    assert sorted(p.name for p in tmp_path.iterdir() if p.is_file()) == ["one.json", "two.json"]
    assert not [p for p in tmp_path.rglob("*") if p.name.endswith(".tmp")]  # no stray temporary files


def test_launch_command_line_errors_are_one_line(capsys):
    from verification import cli

    assert cli.main(["launch", "-n", "2"]) == 2
    assert "give the command to run after --" in capsys.readouterr().err
    assert cli.main(["launch", "-n", "0", "--", "verify"]) == 2
    assert cli.main(["launch", "-n", "2", "--", "launch", "-n", "2"]) == 2


def test_malformed_environment_exits_2(monkeypatch, capsys):
    from verification import cli

    monkeypatch.setenv(PR.ENV_COORDINATOR, "127.0.0.1:1")
    assert cli.main(["verify", "--list"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "ICLKD_NUM_PROCESSES" in err
