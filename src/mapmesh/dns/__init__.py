"""Authoritative DNS for Cloud Map DNS namespaces (A, AAAA, SRV, CNAME; SOA/NS at apexes).

:class:`DnsTable` holds replies built in advance and is rebuilt from the registry view;
:class:`DnsServer` answers UDP and TCP queries from it on its own thread and event loop.
See ``docs/dns.md`` for the semantics.
"""

from mapmesh.dns.server import Answerer, DnsServer, ServerStatistics
from mapmesh.dns.zone import DnsTable, RegistryChange, RegistryModel, TableStatistics

__all__ = [
    "Answerer",
    "DnsServer",
    "DnsTable",
    "RegistryChange",
    "RegistryModel",
    "ServerStatistics",
    "TableStatistics",
]
