"""msgspec Structs of the HTTP API: OpenAI shapes (tenant API) and the admin API."""
