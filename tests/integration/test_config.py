"""katad's configuration: the shipped file documents the built-in defaults, flags win, bad input fails."""
import os
import subprocess

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
KATAD = os.environ.get("KATAD_BIN", os.path.join(REPO, "build", "katad"))


def run(*args):
    return subprocess.run([KATAD, *args], capture_output=True, text=True, timeout=30)


def test_shipped_config_states_the_builtin_defaults():
    shipped = run("--config", os.path.join(REPO, "systemd", "katad.conf"), "--print-config")
    builtin = run("--config", "/dev/null", "--print-config")
    assert shipped.returncode == 0, shipped.stderr
    assert builtin.returncode == 0, builtin.stderr
    assert shipped.stdout == builtin.stdout


def test_flags_override_the_file(tmp_path):
    conf = tmp_path / "katad.conf"
    conf.write_text("[store]\nbackend = fs\n[daemon]\nlog_level = debug\n")
    out = run("--config", str(conf), "--store", "leveldb", "--print-config")
    assert out.returncode == 0, out.stderr
    assert "backend = leveldb" in out.stdout
    assert "log_level = debug" in out.stdout


@pytest.mark.parametrize("text,needle", [
    ("[daemon]\nsokcet = /tmp/x\n", "unknown setting [daemon] sokcet"),
    ("[store]\nbackend = mysql\n", "Unknown store backend"),
    ("[daemon]\nsocket_mode = 999\n", "invalid value"),
    ("[hypervisor]\naccelerator = warp\n", "invalid value"),
    ("not an ini line\n", "syntax error"),
])
def test_bad_config_is_refused_with_a_reason(tmp_path, text, needle):
    conf = tmp_path / "katad.conf"
    conf.write_text(text)
    out = run("--config", str(conf), "--print-config")
    assert out.returncode != 0
    assert needle in out.stderr


def test_missing_explicit_config_is_an_error():
    out = run("--config", "/nonexistent/katad.conf", "--print-config")
    assert out.returncode != 0
    assert "No such file" in out.stderr


def test_unknown_flag_and_stray_argument_are_refused():
    assert run("--frobnicate").returncode != 0
    assert run("stray").returncode != 0


def test_help_and_version():
    assert run("--help").returncode == 0
    out = run("--version")
    assert out.returncode == 0 and out.stdout.startswith("katad ")
