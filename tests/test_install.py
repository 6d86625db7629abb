"""``pip install .`` gives a ``netids`` command doing what ``python app.py`` does, with the
shipped model and the database migrations inside the installed package, and the user's data
(database, accounts, trained models) in their data folder, not in site-packages.

The install goes into a fresh venv in a temporary folder, offline: ``--no-deps
--no-build-isolation``, the dependencies seen through a ``.pth`` line naming the project's
venv, and the sources copied first so the build leaves nothing in the checkout.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

from netids.config import PROJECT_ROOT

SCAN = "attack/evilfingers__TCP_CONNECT_SCAN.pcap"  # 9,924 packets, a few events


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The ``bin`` folder of a fresh venv with netids installed by pip from a copy of the
    sources."""
    root = tmp_path_factory.mktemp("install")
    src = root / "src"
    skip = shutil.ignore_patterns("__pycache__", "*.sqlite*")
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(PROJECT_ROOT / name, src / name)
    for folder in ("netids", "models", "db/migrations"):
        shutil.copytree(PROJECT_ROOT / folder, src / folder, ignore=skip)
    venv = root / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", venv], check=True)
    site = Path(sysconfig.get_path("purelib", vars={"base": str(venv)}))
    (site / "netids-deps.pth").write_text(sysconfig.get_path("purelib") + "\n")
    subprocess.run([venv / "bin" / "python", "-m", "pip", "install", "--quiet", "--no-deps",
                    "--no-build-isolation", "--no-index", src], check=True, timeout=300)
    return venv / "bin"


def netids(bin_dir: Path, cwd: Path, *args: str | Path) -> subprocess.CompletedProcess[str]:
    """The installed command, run from ``cwd`` (not the checkout) with ``cwd/home`` as HOME."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("NETIDS_", "XDG_"))}
    env |= {"HOME": str(cwd / "home"), "CI": "true"}
    return subprocess.run([bin_dir / "netids", *map(str, args)], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=300)


@pytest.mark.slow
def test_pip_install_gives_a_netids_command_like_app_py(installed: Path, tmp_path: Path,
                                                        shared_data: Path) -> None:
    helped = netids(installed, tmp_path, "--help")
    assert helped.returncode == 0
    assert helped.stdout.startswith("usage: netids ")
    for command in ("score", "train", "evaluate", "export", "users", "--eve"):
        assert command in helped.stdout
    site = Path(sysconfig.get_path("purelib", vars={"base": str(installed.parent)}))
    package = site / "netids"
    assert (package / "shipped_models" / "default.pt").read_bytes() == \
        (PROJECT_ROOT / "models" / "default.pt").read_bytes()

    done = netids(installed, tmp_path, "score", shared_data / SCAN, "--out", "s.csv", "--eve",
                  "eve.json", "--db", f"sqlite:///{tmp_path / 'e.sqlite'}")
    assert done.returncode == 0, done.stderr
    assert done.stderr.startswith("9924 packets scored in")
    assert len((tmp_path / "s.csv").read_text().splitlines()) == 9924 + 1
    eve = [json.loads(line) for line in (tmp_path / "eve.json").read_text().splitlines()]
    assert eve and {r["event_type"] for r in eve} == {"alert"}
    exported = netids(installed, tmp_path, "export", "--format", "jsonl", "--out", "x.jsonl",
                      "--db", f"sqlite:///{tmp_path / 'e.sqlite'}")  # migrated, then read back
    assert exported.returncode == 0, exported.stderr
    stored = [json.loads(line) for line in (tmp_path / "x.jsonl").read_text().splitlines()]
    assert {r["event_id"] for r in stored} == {r["netids"]["event_id"] for r in eve}
    assert not list(package.rglob("*.sqlite"))  # nothing written into site-packages


@pytest.mark.slow
def test_the_installed_command_keeps_its_data_in_the_users_data_folder(
        installed: Path, tmp_path: Path) -> None:
    missing = netids(installed, tmp_path, "export", "--format", "csv", "--out", "x.csv")
    default = tmp_path / "home" / ".local" / "share" / "netids" / "db" / "netids.sqlite"
    assert (missing.returncode, missing.stderr) == (2, f"error: no database at {default}\n")
