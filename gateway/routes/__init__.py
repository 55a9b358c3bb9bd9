"""Thin Litestar controllers: dependency -> service -> schema."""
