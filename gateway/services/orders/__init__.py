"""The order book: the in-memory active orders and the journal (book), intake of orders with items
(intake), speed-of-service figures (stats)."""
