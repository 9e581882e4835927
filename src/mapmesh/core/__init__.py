"""Small shared pieces every component may import (logging, time)."""

from mapmesh.core.logs import configure_logging

__all__ = ["configure_logging"]
