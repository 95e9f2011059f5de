"""``from pyme_desk import cluster`` used the way a script uses it."""
import numpy as np
import pytest

from pyme_desk import cluster as cl


@pytest.fixture
def configured(cluster):
    client = cl.configure(servers=cluster.urls, server_filter="test", token="")
    yield client
    cl.reset()


def test_module_functions_use_the_configured_servers(cluster, configured):
    assert cl.client() is configured and cl.client("test") is configured
    cl.put_file("script/a.txt", b"hello")
    cl.put_files([("script/b.txt", b"b"), ("script/c.txt", b"c")])
    assert cl.get_file("script/a.txt") == b"hello"
    assert cl.get_file("script/a.txt", "test") == b"hello"
    assert cl.get_file("pyme-cluster://test/script/b.txt") == b"b"
    assert cl.get_file("PYME-CLUSTER:///script/c.txt") == b"c"
    assert cl.listdir("script") == ["a.txt", "b.txt", "c.txt"]
    assert cl.exists("script/a.txt") and cl.isdir("script") and cl.stat("script/a.txt").size == 5
    assert cl.glob("script/*.txt") == ["script/a.txt", "script/b.txt", "script/c.txt"]
    assert len(cl.get_status()) == 3
    assert [cluster.holders(f"script/{n}.txt") for n in "abc"] == [[0], [1], [1]]
    url = cl.file_results("pyme-cluster://test/__aggregate_h5r/script/r.h5r/FitResults",
                          np.zeros(2, [("tIndex", "<i4")]))
    assert url.startswith(tuple(cluster.urls))


def test_reset_forgets_the_configured_client(configured):
    cl.reset()
    fresh = cl.client()  # built from the configuration; nothing is contacted yet
    try:
        assert fresh is not configured and cl.client() is fresh
    finally:
        cl.reset()
