"""Glue between the routes and the registry/engine: what a request handler delegates to."""
