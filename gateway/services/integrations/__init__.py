"""The integration dialects' services: CloudSignal signals, Print API order status webhooks, table-
tracker register clients, Imprinted signed orders."""
