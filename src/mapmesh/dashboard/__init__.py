"""The dashboard: one page at ``/ui`` served by the control plane from files in this package.

The page is plain HTML, CSS and JavaScript modules (no build step); it reads the control
plane's own APIs (``/v1/topology``, ``/v1/traces``, ``/v1/events``, ``/v1/services`` and the
App Mesh ``ListMeshes``). :func:`dashboard_routes` serves it; :class:`StaticBundle` holds the
shipped files in memory with their content types and validators.
"""

from mapmesh.dashboard.routes import StaticBundle, dashboard_routes

__all__ = ["StaticBundle", "dashboard_routes"]
