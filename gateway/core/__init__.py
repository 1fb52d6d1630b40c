"""The domain's vocabulary: models, events and the bus, the error tree, ports (Clock, Pager), the
printing model and the outbound-address policy. Standard library and pydantic only."""
