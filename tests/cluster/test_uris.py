"""pyme-cluster:// URIs, http URLs and the name rules for PUT (protocol.md §3.1)."""
import pytest

from pyme_desk.cluster.errors import ClusterError
from pyme_desk.cluster.uris import (ClusterURI, HttpURI, clean_path, fix_name, format_cluster_uri,
                                    is_cluster_uri, parse_cluster_uri, parse_http_uri, parse_uri,
                                    split_path, validate_name)


@pytest.mark.parametrize("uri, filt, path", [
    ("pyme-cluster://myfilter/dir/file.pzf", "myfilter", "dir/file.pzf"),
    ("PYME-CLUSTER://node1/2026_11_25/series_0", "node1", "2026_11_25/series_0"),
    ("pyme-cluster:///dir/file", "", "dir/file"),
    ("pyme-cluster://f//dir//file", "f", "dir/file"),
    ("pyme-cluster://f", "f", ""),
    ("pyme-cluster://f/dir/", "f", "dir/"),
])
def test_parse_cluster_uri(uri, filt, path):
    parsed = parse_cluster_uri(uri)
    assert (parsed.server_filter, parsed.path) == (filt, path)


@pytest.mark.parametrize("text", ["Pyme-Cluster://f/x", "pyme-cluster:/f/x", "http://h:1/x", "dir/file"])
def test_other_schemes_and_cases_are_not_cluster_uris(text):
    assert not is_cluster_uri(text)
    with pytest.raises(ValueError, match="not a cluster URI"):
        parse_cluster_uri(text)


def test_format_round_trips_and_keeps_the_spooler_case():
    assert format_cluster_uri("f", "/a/b") == "pyme-cluster://f/a/b"
    upper = format_cluster_uri("f", "a/b", upper=True)
    assert upper == "PYME-CLUSTER://f/a/b"
    assert str(parse_cluster_uri(upper)) == upper
    assert str(parse_cluster_uri("pyme-cluster:///x")) == "pyme-cluster:///x"


def test_http_urls_split_into_server_and_path():
    assert parse_http_uri("http://10.0.0.5:15348/__aggregate_h5r/a/x.h5r/FitResults") == HttpURI(
        "http://10.0.0.5:15348/", "__aggregate_h5r/a/x.h5r/FitResults")
    with pytest.raises(ValueError):
        parse_http_uri("ftp://h/x")


def test_parse_uri_dispatches_on_the_form():
    assert isinstance(parse_uri("pyme-cluster://f/a"), ClusterURI)
    assert isinstance(parse_uri("http://h:1/a"), HttpURI)
    assert parse_uri("/a//b/./c") == "a/b/c"


def test_dotdot_is_refused_not_dropped():
    with pytest.raises(ClusterError, match=r"'\.\.'"):
        clean_path("a/../../etc/passwd")
    with pytest.raises(ClusterError):
        parse_cluster_uri("pyme-cluster://f/../x")


def test_validate_name_accepts_pyme_names_and_explains_refusals():
    assert validate_name("/2026_11_25/series-0/frame00001.pzf") == "2026_11_25/series-0/frame00001.pzf"
    with pytest.raises(ValueError) as e:
        validate_name("my series/frame?.pzf")
    assert "' ?'" in str(e.value) and "fix_name" in str(e.value)
    with pytest.raises(ValueError, match="empty"):
        validate_name("/")


def test_fix_name_replaces_spaces():
    assert fix_name("my series 1") == "my_series_1"
    assert validate_name(fix_name("my series 1/x.txt")) == "my_series_1/x.txt"


def test_split_path():
    assert split_path("a/b/c.txt") == ("a/b", "c.txt")
    assert split_path("c.txt") == ("", "c.txt")
    assert split_path("a/b/") == ("a", "b")
