"""The domain services, one package per domain; they reach hardware only through core.ports and
storage only through store."""
