"""Leaf library for the table-tracker radio (BLE trackers, serial pads, simulator).

It imports nothing from `gateway`, `web` or `printers`: codecs, the scanner, the pager, the pad
links and the simulator expose small models and callbacks that the composition wires in.
"""
