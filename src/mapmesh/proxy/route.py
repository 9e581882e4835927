"""The route step of a request (DESIGN's ``proxy/route``): see :mod:`mapmesh.proxy.routing`.

This module is the import point the router uses; the implementation, its theory of
operation and an example live in the :mod:`mapmesh.proxy.routing` package (one module per
piece: request view, matchers, weighted picker, route tables, gateway routes).
"""

from mapmesh.proxy.routing import (
    CompiledGatewayRoutes,
    CompiledRouteTable,
    GatewayHit,
    InvalidRoute,
    NoRoute,
    NoRouteCause,
    OutboundRoutes,
    RequestHead,
    RouteHit,
    WeightedPicker,
    query_params,
    rewrite_prefix,
    split_authority,
)

__all__ = [
    "CompiledGatewayRoutes",
    "CompiledRouteTable",
    "GatewayHit",
    "InvalidRoute",
    "NoRoute",
    "NoRouteCause",
    "OutboundRoutes",
    "RequestHead",
    "RouteHit",
    "WeightedPicker",
    "query_params",
    "rewrite_prefix",
    "split_authority",
]
