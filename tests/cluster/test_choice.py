"""Server choice: least recently used, never a server without room (real /__status documents)."""
import copy

import pytest

from pyme_desk.cluster.choice import ServerChooser, choose_server, free_bytes
from pyme_desk.cluster.errors import InsufficientSpaceError, ServerUnreachableError

MiB = 2**20


@pytest.fixture
def statuses(cluster, client):
    """The three servers' real status documents, keyed by URL."""
    docs = client.get_status()
    assert all(free_bytes(d) for d in docs)
    return {d["URL"]: d for d in docs}


def with_free(statuses, url, free):
    edited = copy.deepcopy(statuses)
    edited[url]["Disk"]["free"] = free
    return edited


def test_round_robin_in_list_order(cluster, statuses):
    chooser = ServerChooser(margin=10 * MiB)
    picks = [chooser.choose(cluster.urls, statuses=statuses, need_bytes=1000) for _ in range(6)]
    assert picks == cluster.urls * 2


def test_a_server_short_of_space_is_never_chosen(cluster, statuses):
    a, b, c = cluster.urls
    edited = with_free(statuses, a, 50 * MiB + 999)  # file + margin = 50 MiB + 1000
    chooser = ServerChooser(margin=50 * MiB)
    picks = {chooser.choose(cluster.urls, statuses=edited, need_bytes=1000) for _ in range(10)}
    assert picks == {b, c}
    # One byte more and it qualifies again (and, never used, it comes first).
    assert chooser.choose(cluster.urls, statuses=with_free(edited, a, 50 * MiB + 1000), need_bytes=1000) == a


def test_no_room_anywhere_says_so(cluster, statuses):
    edited = statuses
    for url in cluster.urls:
        edited = with_free(edited, url, 10 * MiB)
    with pytest.raises(InsufficientSpaceError, match="no data server has room for 1000 bytes"):
        choose_server(cluster.urls, {}, 0.0, statuses=edited, need_bytes=1000, margin=10 * MiB)


def test_unresponsive_servers_are_skipped(cluster, statuses):
    a, b, c = cluster.urls
    edited = copy.deepcopy(statuses)
    edited[a] = {"IPAddress": "127.0.0.1", "Port": 1, "Responsive": False}
    assert choose_server(cluster.urls, {}, 0.0, statuses=edited) == b
    for url in (b, c):
        edited[url] = dict(edited[a])
    with pytest.raises(ServerUnreachableError, match="no responsive data server"):
        choose_server(cluster.urls, {}, 0.0, statuses=edited)


def test_least_recently_used_wins_and_unknown_disk_is_trusted():
    a, b, c = "http://127.0.0.1:1/", "http://127.0.0.1:2/", "http://127.0.0.1:3/"
    assert choose_server([a, b, c], {a: 5.0, b: 1.0}, 10.0) == c  # never used
    assert choose_server([a, b, c], {a: 5.0, b: 1.0, c: 9.0}, 10.0) == b
    assert choose_server([a, b], {}, 0.0, statuses={a: {"Responsive": True}}) == a
    assert choose_server([a, b], {}, 0.0, exclude={a}) == b
