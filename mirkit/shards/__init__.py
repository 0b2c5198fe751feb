"""Shards format v1: item shards (WebDataset tars) and tables, built once from raw data
and reused by every experiment. See docs/shards.md for the contract."""
