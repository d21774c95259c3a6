#!/usr/bin/env python3
"""``uv pip install`` into a virtual environment, from the package sources pip is configured with.

The Makefile installs both environments with uv: it downloads, unpacks and compiles in parallel, so a fresh
machine's install takes well under a minute where pip took two. uv reads no pip configuration (pip.conf,
``PIP_*`` variables), and a machine's pip configuration may be what makes the install work at all: a CPU
torch in a local wheel folder, a mirror, a certificate bundle. So this hands pip's package sources on to uv,
as ``pip config list`` gives them (a ``PIP_*`` variable over the ``install`` section over ``global``):
the index, the extra indexes, the find-links locations, the constraint files, the trusted hosts, the
certificate bundle and the timeout. pip treats every index alike and takes the best version among all of
them; uv is told to do the same (``--index-strategy unsafe-best-match``).

    python3 tools/uv_pip.py VENV ARGS...   # runs VENV/bin/uv pip install --python VENV/bin/python ARGS... + pip's sources
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys

#: pip's option -> uv's (options that take a list: one flag per item)
LIST_OPTIONS = {"extra-index-url": "--extra-index-url", "find-links": "--find-links", "constraint": "--constraint",
                "trusted-host": "--allow-insecure-host"}


def pip_config(listing: str) -> dict[str, str]:
    """The options of ``pip config list``'s output that an install uses: per option, the environment's value,
    else the ``install`` section's, else the ``global`` one's."""
    found: dict[str, dict[str, str]] = {}
    for line in listing.splitlines():
        match = re.fullmatch(r"(:env:|global|install)\.([a-z0-9-]+)='(.*)'", line.strip())
        if match:
            found.setdefault(match[2], {})[match[1]] = match[3]
    return {option: next(by[s] for s in (":env:", "install", "global") if s in by) for option, by in found.items()}


def uv_sources(config: dict[str, str]) -> tuple[list[str], dict[str, str]]:
    """uv's arguments and environment for pip's options ``config`` (:func:`pip_config`)."""
    args, env = ["--index-strategy", "unsafe-best-match"], {}
    if "index-url" in config:
        args += ["--index-url", config["index-url"]]
    for option, flag in LIST_OPTIONS.items():
        for value in config.get(option, "").split():
            args += [flag, value]
    if config.get("no-index", "").lower() in ("1", "true", "yes", "on"):
        args.append("--no-index")
    if config.get("cert"):
        env["SSL_CERT_FILE"] = config["cert"]
    if config.get("default-timeout"):
        env["UV_HTTP_TIMEOUT"] = config["default-timeout"]
    return args, env


def main(argv: list[str]) -> int:
    if len(argv) < 2:
        print(__doc__, file=sys.stderr)
        return 2
    venv, args = argv[0], argv[1:]
    if not os.access(os.path.join(venv, "bin", "uv"), os.X_OK):
        print(f"{os.path.join(venv, 'bin', 'uv')}: no uv in this environment (install it first: "
              f"{os.path.join(venv, 'bin', 'python')} -m pip install uv)", file=sys.stderr)
        return 2
    listing = subprocess.run([sys.executable, "-m", "pip", "config", "list"], capture_output=True, text=True).stdout
    sources, env = uv_sources(pip_config(listing))
    command = [os.path.join(venv, "bin", "uv"), "pip", "install", "--python", os.path.join(venv, "bin", "python"), *sources, *args]
    # the sources are not printed: an index URL may hold a token
    options = sum(a.startswith("--") for a in sources) - 1  # less the index strategy, which is this script's
    print("+", shlex.join(command[:5] + args), f"(and {options} package-source options from pip's configuration)", flush=True)
    return subprocess.run(command, env={**os.environ, **env}).returncode


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
