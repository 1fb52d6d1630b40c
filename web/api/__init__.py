"""The dialects, one package each; a dialect never imports another."""
