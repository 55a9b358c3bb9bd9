"""Namespaced, block-granular radix tree of KV-cache blocks (pure Python, no torch)."""
