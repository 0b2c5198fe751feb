"""Names of everything in a shards directory (format v1); see docs/shards.md."""

MANIFEST = "manifest.json"
CATALOG = "catalog.parquet"
INTERACTIONS = "interactions.parquet"
USERS = "users.parquet"
FAILURES = "failures.parquet"
TOKENIZER = "tokenizer"
ITEMS = "items"
STAGING = ".build"
PLAN = ".build/plan.json"
STAGED_CATALOG = ".build/catalog.parquet"
TABLE_PROBLEMS = ".build/table-problems.parquet"
IMPORTS = ".build/imports.json"


def shard_name(index: int) -> str:
    return f"items-{index:06d}.tar"
