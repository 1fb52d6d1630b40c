"""The aiohttp adapters: routing, the dialects, error envelopes, limits on requests, the OpenAPI
document and the feeds."""
