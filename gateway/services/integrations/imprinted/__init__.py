"""Imprinted (seed 001): app secrets, signature checks with a replay cache, each app's orders."""
