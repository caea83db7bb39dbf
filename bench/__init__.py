"""The benchmark: the gateway's cost measured side by side with a direct call (`make bench`)."""
