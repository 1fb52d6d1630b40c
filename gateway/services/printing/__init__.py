"""Printers and print requests (seed 000, Imprimo): the queue, one worker per printer, stations,
answers and reports."""
