"""Shared pytest fixtures."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest


@pytest.fixture(scope="module")
def lab_net() -> Iterator[object]:
    """A small lab network: hosts ``a`` (10.77.0.21) and ``b`` (10.77.0.22) on one bridge.

    Capture on the bridge with ``LiveSource("br0", ..., netns=lab_net.switch)`` or on a host's
    ``eth0`` with ``netns=lab_net.hosts["b"].ns``; run programs with ``lab_net.run("a", ...)``.
    Everything is deleted afterwards. Needs root.
    """
    if os.geteuid() != 0:
        pytest.skip("the lab needs root (network namespaces)")
    from netids.lab import LabNetwork

    with LabNetwork({"a": 21, "b": 22}) as net:
        yield net


@pytest.fixture(scope="session")
def trained_model() -> Path:
    """The model that ships in models/: tests score with what users get on first run."""
    from netids.config import DEFAULT_MODEL

    assert DEFAULT_MODEL.exists(), f"{DEFAULT_MODEL} must ship with the project"
    return DEFAULT_MODEL
