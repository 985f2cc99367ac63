"""Egress: what a sandbox may reach outside itself, and the proxy that enforces it (the
sandbox has no route out but the Unix sockets this package serves; see proxy.py)."""
