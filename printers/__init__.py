"""Leaf library for ESC/POS printers (rendering, transports, status).

It imports nothing from `gateway` or `web`; the printers issue fills it in.
"""
