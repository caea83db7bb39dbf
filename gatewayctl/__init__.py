"""`python -m gatewayctl`: the admin CLI over the gateway's admin API."""
