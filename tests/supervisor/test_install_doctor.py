"""install-service / uninstall-service file generation and the doctor's findings."""
from __future__ import annotations

import os
import shlex
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

from pyme_desk.config import Config
from pyme_desk.supervisor import doctor
from pyme_desk.supervisor.install import (SERVICE_NAME, agent_command, install_commands, systemd_unit,
                                          uninstall_commands, windows_task_xml)


def run_cli(*args: str, env=None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pyme_desk", *args], capture_output=True, text=True,
                          timeout=60, env=env)


def test_install_writes_a_user_unit_without_touching_systemd(tmp_path, data_root):
    done = run_cli("install-service", "--root", str(data_root), "--unit-dir", str(tmp_path), "--no-enable",
                   "--", "--bind", "0.0.0.0")
    assert done.returncode == 0, done.stderr
    unit = (tmp_path / f"{SERVICE_NAME}.service").read_text()
    exec_start = next(ln for ln in unit.splitlines() if ln.startswith("ExecStart="))[len("ExecStart="):]
    assert shlex.split(exec_start) == [sys.executable, "-m", "pyme_desk", "node", "--root", str(data_root),
                                       "--bind", "0.0.0.0"]
    assert "Restart=on-failure" in unit and "WantedBy=default.target" in unit
    assert "User=" not in unit  # a user unit runs as its owner, never root
    done = run_cli("uninstall-service", "--unit-dir", str(tmp_path), "--no-disable")
    assert done.returncode == 0, done.stderr
    assert not (tmp_path / f"{SERVICE_NAME}.service").exists()


def test_systemd_quoting_survives_spaces_and_percent():
    unit = systemd_unit(["/opt/my python/bin/python", "-m", "pyme_desk", "node", "--root", "/data/100% sure"])
    line = next(ln for ln in unit.splitlines() if ln.startswith("ExecStart="))
    assert line == 'ExecStart="/opt/my python/bin/python" -m pyme_desk node --root "/data/100%% sure"'


def test_windows_task_xml_runs_the_agent_at_boot_as_the_user():
    argv = [r"C:\Program Files\Python311\python.exe", "-m", "pyme_desk", "node", "--root", r"D:\PYME Data"]
    root = ET.fromstring(windows_task_xml(argv, r"LAB\alice").split("\n", 1)[1])
    ns = {"t": "http://schemas.microsoft.com/windows/2004/02/mit/task"}
    assert root.find("t:Triggers/t:BootTrigger/t:Enabled", ns).text == "true"
    assert root.find("t:Principals/t:Principal/t:UserId", ns).text == r"LAB\alice"
    assert root.find("t:Principals/t:Principal/t:RunLevel", ns).text == "LeastPrivilege"
    assert root.find("t:Actions/t:Exec/t:Command", ns).text == argv[0]
    assert root.find("t:Actions/t:Exec/t:Arguments", ns).text == '-m pyme_desk node --root "D:\\PYME Data"'
    create = install_commands("win32", Path(r"C:\x\task.xml"), r"LAB\alice")[0]
    assert create[:6] == ["schtasks", "/Create", "/TN", SERVICE_NAME, "/XML", r"C:\x\task.xml"]
    assert uninstall_commands("win32") == [["schtasks", "/Delete", "/TN", SERVICE_NAME, "/F"]]
    assert install_commands("linux", Path("u"), "alice")[-1][-2:] == ["--now", f"{SERVICE_NAME}.service"]


def test_agent_command_is_this_python():
    assert agent_command(None)[:4] == [sys.executable, "-m", "pyme_desk", "node"]


def levels(found, check):
    return {f.level for f in found if f.check == check}


def test_doctor_data_root_checks(tmp_path, monkeypatch):
    assert levels(doctor.check_data_root(tmp_path), "data root") == {"ok"}
    assert levels(doctor.check_data_root(tmp_path / "missing"), "data root") == {"warning"}
    file_root = tmp_path / "file"
    file_root.write_text("")
    assert levels(doctor.check_data_root(file_root), "data root") == {"problem"}
    monkeypatch.setenv("HOME", str(tmp_path))
    home = [f for f in doctor.check_data_root(tmp_path) if f.level == "problem"]
    assert home and "home directory" in home[0].message and home[0].fix


def test_doctor_config_checks():
    bad = Config(values={"dataserver-port": "eighty", "nodeserver-num_workers": 0})
    found = [f for f in doctor.check_config(bad) if f.level == "problem"]
    assert {f.message.split()[0] for f in found} == {"dataserver-port", "nodeserver-num_workers"}
    assert all(f.fix for f in found)


def test_doctor_flags_a_port_in_use():
    import socket

    with socket.socket() as s:
        s.bind(("0.0.0.0", 0))
        s.listen()
        port = s.getsockname()[1]
        found = doctor.check_ports(Config(values={"dataserver-port": port}))
    busy = [f for f in found if str(port) in f.message]
    assert busy and busy[0].level == "warning" and "in use" in busy[0].message


def test_doctor_command_exit_codes(tmp_path):
    env = dict(os.environ, PYME_DESK_CONFIG=os.devnull)
    ok = run_cli("doctor", "--root", str(tmp_path), env=env)
    assert "problem(s)" in ok.stdout and "Traceback" not in ok.stderr
    expected = 1 if "[problem]" in ok.stdout else 0
    assert ok.returncode == expected
    file_root = tmp_path / "file"
    file_root.write_text("")
    bad = run_cli("doctor", "--root", str(file_root), "--json", env=env)
    assert bad.returncode == 1
    assert '"level": "problem"' in bad.stdout
