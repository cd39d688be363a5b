"""Unit tests start no process: no stack, no Redis, no subprocess (tests/stack holds those). A test that
tries fails here, so the unit loop stays under a minute on a laptop."""

from __future__ import annotations

import multiprocessing.process
import platform
import subprocess

import pytest


class ProcessStarted(Exception):
    pass


def _refuse(*args, **kwargs):
    raise ProcessStarted("a unit test started a process: it belongs in tests/stack")


@pytest.fixture(scope="package", autouse=True)
def no_processes():
    platform.platform()   # cached once here: mlflow reads it at import, through `uname -p`
    popen, start = subprocess.Popen._execute_child, multiprocessing.process.BaseProcess.start
    subprocess.Popen._execute_child, multiprocessing.process.BaseProcess.start = _refuse, _refuse
    yield
    subprocess.Popen._execute_child, multiprocessing.process.BaseProcess.start = popen, start
