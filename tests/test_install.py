"""tools/uv_pip.py: the Makefile's installs through uv, from the package sources pip is configured with."""

import importlib.util
import json
import os
import stat
import subprocess
import sys

from conftest import ROOT


def _uv_pip():
    spec = importlib.util.spec_from_file_location("uv_pip", ROOT / "tools" / "uv_pip.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


LISTING = """\
:env:.default-timeout='180'
:env:.find-links='/opt/wheels /srv/more'
global.cert='/etc/ssl/certs/ca-certificates.crt'
global.constraint='/etc/pip/constraints.txt'
global.extra-index-url='file:///opt/pypi/simple https://user:s3cret@mirror.example/simple'
global.find-links='/ignored'
global.index-url='https://global.example/simple'
install.index-url='https://install.example/simple'
global.trusted-host='mirror.example'
user.something='ignored'
"""


def test_pip_options_take_the_environment_over_the_install_section_over_global():
    config = _uv_pip().pip_config(LISTING)
    assert config == {"default-timeout": "180", "find-links": "/opt/wheels /srv/more",
                      "cert": "/etc/ssl/certs/ca-certificates.crt", "constraint": "/etc/pip/constraints.txt",
                      "extra-index-url": "file:///opt/pypi/simple https://user:s3cret@mirror.example/simple",
                      "index-url": "https://install.example/simple", "trusted-host": "mirror.example"}


def test_each_pip_source_becomes_uvs_flag_and_the_certificate_and_timeout_its_environment():
    module = _uv_pip()
    args, env = module.uv_sources(module.pip_config(LISTING))
    assert args == ["--index-strategy", "unsafe-best-match", "--index-url", "https://install.example/simple",
                    "--extra-index-url", "file:///opt/pypi/simple", "--extra-index-url", "https://user:s3cret@mirror.example/simple",
                    "--find-links", "/opt/wheels", "--find-links", "/srv/more", "--constraint", "/etc/pip/constraints.txt",
                    "--allow-insecure-host", "mirror.example"]
    assert env == {"SSL_CERT_FILE": "/etc/ssl/certs/ca-certificates.crt", "UV_HTTP_TIMEOUT": "180"}
    assert module.uv_sources({"no-index": "true"})[0][-1] == "--no-index"
    assert module.uv_sources({}) == (["--index-strategy", "unsafe-best-match"], {})


def test_the_install_runs_the_environments_uv_with_pips_sources_and_prints_no_index_url(tmp_path):
    """The script runs VENV/bin/uv with its arguments after pip's sources, passes uv's exit code on, and
    prints the command without the sources (an index URL may hold a token)."""
    venv = tmp_path / "venv"
    (venv / "bin").mkdir(parents=True)
    record = tmp_path / "call.json"
    fake = venv / "bin" / "uv"
    fake.write_text(f"#!{sys.executable}\nimport json, os, sys\n"
                    f"json.dump({{'argv': sys.argv[1:], 'timeout': os.environ.get('UV_HTTP_TIMEOUT')}}, open({str(record)!r}, 'w'))\n"
                    "sys.exit(3)\n")
    fake.chmod(fake.stat().st_mode | stat.S_IXUSR)
    pip_conf = tmp_path / "pip.conf"
    pip_conf.write_text("[global]\nextra-index-url = https://user:s3cret@mirror.example/simple\ndefault-timeout = 42\n")
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("PIP_")}, "PIP_CONFIG_FILE": str(pip_conf)}
    done = subprocess.run([sys.executable, str(ROOT / "tools" / "uv_pip.py"), str(venv), "-q", "torch==2.13.0"],
                          capture_output=True, text=True, env=env)
    assert done.returncode == 3
    call = json.loads(record.read_text())
    assert call["argv"][:4] == ["pip", "install", "--python", str(venv / "bin" / "python")]
    assert call["argv"][-2:] == ["-q", "torch==2.13.0"]
    assert "https://user:s3cret@mirror.example/simple" in call["argv"] and call["timeout"] == "42"
    assert "s3cret" not in done.stdout + done.stderr and "torch==2.13.0" in done.stdout


def test_an_environment_without_uv_is_named(tmp_path):
    done = subprocess.run([sys.executable, str(ROOT / "tools" / "uv_pip.py"), str(tmp_path), "-q", "x"], capture_output=True, text=True)
    assert done.returncode == 2 and f"{tmp_path}/bin/uv: no uv in this environment" in done.stderr
