"""pipeline.runtime.ray_cluster.connect: a Ray that cannot be joined or started is one line,
exit 2 for a bad address (the user's), exit 1 for an embedded Ray that does not start (the
machine's); Ray itself is replaced by a stub that raises what Ray raises, so nothing starts."""
from __future__ import annotations

import socket
import sys

import pytest

from pipeline import cli
from pipeline.runtime import ray_cluster


class _FailingRay:
    """Stands in for the `ray` module: not initialised, and `init` raises `exc`."""

    def __init__(self, exc: Exception):
        self.exc, self.calls = exc, []

    def is_initialized(self):
        return False

    def init(self, **kwargs):
        self.calls.append(kwargs)
        raise self.exc


@pytest.fixture
def fake_ray(monkeypatch):
    def install(exc):
        ray = _FailingRay(exc)
        monkeypatch.setitem(sys.modules, "ray", ray)
        monkeypatch.delenv("RAY_ADDRESS", raising=False)
        return ray
    return install


def _reported(exc, capsys) -> tuple[int, str]:
    code = cli._report(exc)
    return code, capsys.readouterr().err.strip()


def test_a_cluster_that_refuses_to_be_joined_is_a_user_error(fake_ray, capsys):
    with socket.socket() as server:             # a port that answers, so the address passes the probe
        server.bind(("127.0.0.1", 0))
        server.listen()
        address = f"127.0.0.1:{server.getsockname()[1]}"
        ray = fake_ray(ConnectionError("Could not find any running Ray instance.\nPlease specify the address"))
        with pytest.raises(ray_cluster.RayClusterError) as info:
            ray_cluster.connect(address)
    assert ray.calls and ray.calls[0]["address"] == address
    code, err = _reported(info.value, capsys)
    assert code == 2 and err.startswith("error: --address ") and len(err.splitlines()) == 1, err
    assert address in err and "ConnectionError: Could not find any running Ray instance. Please" in err


@pytest.mark.parametrize("address, words", [("ray://127.0.0.1:1", ["unreachable"]), ("nonsense", ["HOST:PORT"])])
def test_an_address_from_the_environment_is_named_as_such(fake_ray, monkeypatch, capsys, address, words):
    ray = fake_ray(AssertionError("ray.init must not be reached"))
    monkeypatch.setenv("RAY_ADDRESS", address)
    with pytest.raises(ray_cluster.RayClusterError) as info:
        ray_cluster.connect(None)
    assert not ray.calls
    code, err = _reported(info.value, capsys)
    assert code == 2 and err.startswith(f"error: RAY_ADDRESS {address!r}") and len(err.splitlines()) == 1, err
    assert all(w in err for w in words), err


def test_an_embedded_ray_that_does_not_start_is_the_machines_refusal(fake_ray, capsys):
    # what Ray raises when its raylet does not register in time (ray/_private/node.py)
    fake_ray(Exception("The current node timed out during startup. This could happen because some of the "
                       "raylet failed to startup or the GCS has become overloaded."))
    with pytest.raises(ray_cluster.RayStartError) as info:
        ray_cluster.connect(None, num_cpus=1)
    assert "timed out during startup" in str(info.value)        # per_chip's retry looks for these words
    code, err = _reported(info.value, capsys)
    assert code == 1 and err.startswith("error: the embedded Ray did not start") and len(err.splitlines()) == 1, err
    assert "internal error" not in err and "Traceback" not in err


def test_a_bug_is_still_reported_as_one():
    """The environment rule does not swallow other errors: a plain RuntimeError is not the machine's."""
    from pipeline.errors import environment_problem
    assert environment_problem(RuntimeError("shape mismatch")) is None
    assert environment_problem(ray_cluster.RayStartError("no shm")) == "no shm"
