"""Table trackers: the inventory, pairing and readings turned into order changes (inventory), and
paging (paging)."""
