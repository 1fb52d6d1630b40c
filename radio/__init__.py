"""Leaf library for the table-tracker radio (BLE trackers, serial pads, simulator).

It imports nothing from `gateway` or `web`; the radio issue fills it in. Until then the
gateway runs without a radio and orders carry only the trackers bound through the API.
"""
