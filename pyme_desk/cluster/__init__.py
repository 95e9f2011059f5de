"""Client for a PYME-style cluster of data servers.

Scripts use the module-level functions (backed by shared clients, see :mod:`.default`)::

    from pyme_desk import cluster
    data = cluster.get_file("dir/file", "myfilter")

and programs hold a :class:`ClusterClient` of their own.  Nothing here touches the network,
or starts discovery, until a function is called.
"""
from pyme_desk.cluster.client import ClusterClient, ClusterStat
from pyme_desk.cluster.default import (aggregate_url, client, configure, exists, file_results,
                                       get_file, get_status, glob, isdir, list_entries, listdir,
                                       locate_file, mirror_file, put_file, put_files, reset, stat, walk)
from pyme_desk.cluster.errors import (ClusterError, ClusterFileExistsError, ClusterFileNotFoundError,
                                      InsufficientSpaceError, InvalidNameError, NoServersError,
                                      PutFilesError, ServerError, ServerTimeoutError,
                                      ServerUnreachableError)
from pyme_desk.cluster.listing import Entry
from pyme_desk.cluster.uris import (ClusterURI, HttpURI, fix_name, format_cluster_uri, parse_cluster_uri,
                                    parse_uri, validate_name)

__all__ = [
    "ClusterClient", "ClusterStat", "Entry",
    "configure", "reset", "client", "get_file", "put_file", "put_files", "listdir", "list_entries", "isdir",
    "exists", "stat", "walk", "glob", "locate_file", "mirror_file", "get_status", "aggregate_url",
    "file_results",
    "ClusterURI", "HttpURI", "parse_cluster_uri", "format_cluster_uri", "parse_uri", "validate_name",
    "fix_name",
    "ClusterError", "NoServersError", "ClusterFileNotFoundError", "ClusterFileExistsError",
    "InvalidNameError", "InsufficientSpaceError", "ServerError", "ServerTimeoutError",
    "ServerUnreachableError", "PutFilesError",
]
