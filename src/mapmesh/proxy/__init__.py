"""The data plane: the sidecar proxy and gateway (one core), fed by snapshot streams."""
