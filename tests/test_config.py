"""PYME-compatible config loading."""
import subprocess
import sys
from pathlib import Path

import pytest

from pyme_desk.config import ConfigError, load_config


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def test_later_files_override_earlier_and_defaults_fill_in(tmp_path):
    site = write(tmp_path / "site.yaml", "dataserver-root: /srv/pyme\ndataserver-filter: labA\nhttpspooler-chunksize: 100\n")
    user = write(tmp_path / "user.yaml", "dataserver-filter: labB\n")
    cfg = load_config([site, user, tmp_path / "missing.yaml"], env={})
    assert cfg.data_root == Path("/srv/pyme")
    assert cfg.server_filter == "labB"
    assert cfg.get("httpspooler-chunksize") == 100
    assert cfg.get("dataserver-port") == 15348 and cfg.get("ruleserver-port") == 15346
    assert cfg.get("nodeserver-port") == 15347 and cfg.get("clusterIO-hybridns") is True
    assert cfg.sources == [site, user]


def test_data_root_and_filter_fall_back_like_pyme(tmp_path):
    cfg = load_config([], env={"PYMEDATADIR": str(tmp_path / "d"), "PYME_COMPUTERNAME": "scope1"})
    assert cfg.data_root == tmp_path / "d"
    assert cfg.server_filter == "scope1"
    cfg = load_config([write(tmp_path / "c.yaml", "dataserver-filter: ''\n")], env={})
    assert cfg.server_filter == ""  # an explicit empty filter means every server


def test_env_var_names_an_extra_file(tmp_path, monkeypatch):
    extra = write(tmp_path / "extra.yaml", "nodeserver-port: 9999\n")
    monkeypatch.setattr("pyme_desk.config.site_config_dir", lambda: tmp_path / "nosite")
    monkeypatch.setattr("pyme_desk.config.user_config_dir", lambda: tmp_path / "nouser")
    cfg = load_config(env={"PYME_DESK_CONFIG": str(extra)})
    assert cfg.get("nodeserver-port") == 9999


def test_broken_yaml_names_file_and_line(tmp_path):
    bad = write(tmp_path / "config.yaml", "dataserver-root: /data\ndataserver-filter: [unclosed\nother: 1\n")
    with pytest.raises(ConfigError) as e:
        load_config([bad], env={})
    assert str(bad) in str(e.value) and "line" in str(e.value)


def test_non_mapping_config_is_refused(tmp_path):
    with pytest.raises(ConfigError, match="mapping"):
        load_config([write(tmp_path / "c.yaml", "- a\n- b\n")], env={})


def test_token_from_file(tmp_path):
    token = write(tmp_path / "token", "abc123\n")
    cfg = load_config([write(tmp_path / "c.yaml", f"desk-token-file: {token}\n")], env={})
    assert cfg.cluster_token == "abc123"
    cfg = load_config([write(tmp_path / "d.yaml", f"desk-token-file: {tmp_path / 'none'}\n")], env={})
    with pytest.raises(ConfigError, match="token"):
        cfg.cluster_token


def test_cli_reports_a_broken_config_in_one_line(tmp_path):
    bad = write(tmp_path / "config.yaml", "a: [\n")
    r = subprocess.run([sys.executable, "-m", "pyme_desk", "--config", str(bad), "config"],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 2
    assert len(r.stderr.strip().splitlines()) == 1 and str(bad) in r.stderr and "line" in r.stderr


def test_cli_config_shows_merged_values(tmp_path):
    good = write(tmp_path / "config.yaml", "dataserver-filter: labX\ndesk-cluster-token: secret\n")
    r = subprocess.run([sys.executable, "-m", "pyme_desk", "--config", str(good), "config"],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 0
    assert "dataserver-filter: labX" in r.stdout and "secret" not in r.stdout
