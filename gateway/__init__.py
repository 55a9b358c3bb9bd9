"""The user-facing service: Litestar app, OpenAI and admin routes, canonical prompts, CLI."""
