"""Managed services: the supervisor behind the cluster of one, the node agent and the GUI.

Qt-free.  :class:`Supervisor` starts a cluster's services as child processes in dependency
order, probes them, restarts them and stops them without leaving orphans; everything it shows
is an immutable :class:`ClusterSnapshot`.
"""
from pyme_desk.supervisor.services import (ClusterSnapshot, ServiceSpec, ServiceState, ServiceStatus,
                                           cluster_services, pyme_desk_args)
from pyme_desk.supervisor.supervisor import Policy, Supervisor

__all__ = ["ClusterSnapshot", "Policy", "ServiceSpec", "ServiceState", "ServiceStatus", "Supervisor",
           "cluster_services", "pyme_desk_args"]
