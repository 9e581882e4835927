"""The local task runner: ``mapmesh up|ps|logs|scale|down`` runs a whole mesh on one machine.

Modules, each with one job: ``appfile`` and ``fields`` (parse and validate an app file),
``derive`` (app file → App Mesh resources and Cloud Map entries), ``launch`` (what a replica
runs, its environment), ``rollout`` (the next step for a node's replicas), ``health`` (a
replica's health streaks) — all without I/O — and around them ``replica`` (one app and its
sidecar), ``daemons`` (control plane and gateway), ``meshsync`` (applying to a control plane),
``supervisor``, ``control`` (its endpoint), ``state`` (the state directory), ``ports``,
``processes`` and ``logfiles``. Importing the package imports none of them, so the CLI starts
fast.
"""

__all__: list[str] = []
