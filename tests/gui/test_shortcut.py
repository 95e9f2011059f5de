"""install-shortcut writes a Linux .desktop entry (HOME pointed at a temporary folder)."""
import sys

import pytest

from pyme_desk.cli import main

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Linux .desktop files")


def test_install_shortcut_writes_desktop_and_startmenu_entries(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.delenv("SUDO_USER", raising=False)
    assert main(["install-shortcut"]) == 0
    entries = [tmp_path / "Desktop" / "PYME_Desk.desktop",
               tmp_path / ".local" / "share" / "applications" / "PYME_Desk.desktop"]
    for entry in entries:
        text = entry.read_text()
        assert "Name=PYME Desk\n" in text and "Terminal=false" in text
        assert f'Exec="{sys.executable}" -m pyme_desk\n' in text
        icon = next(line[5:] for line in text.splitlines() if line.startswith("Icon="))
        assert icon.endswith("pyme-desk.png") and (tmp_path / icon).exists()
    assert capsys.readouterr().out.count("created ") == 2


def test_install_shortcut_refuses_to_do_nothing(capsys):
    assert main(["install-shortcut", "--no-desktop", "--no-startmenu"]) == 2
    assert "nothing to do" in capsys.readouterr().err
