"""Embedded paged-KV inference engine (PyTorch): model, KV pool, attention, scheduler."""
