"""Leaf library for ESC/POS printers (rendering, transports, status).

It imports nothing from `gateway`, `web` or `radio`: the composition gives it what it needs
(for example the connect-time address guard) and translates its results at the boundary.
"""
