"""Names of everything in a shards directory (format v1); see docs/shards.md."""

from pathlib import Path

from mirkit.errors import ShardsError

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
LOCKS = ".build/locks"  # one lock file per build part in progress


def shard_path(shards_dir: Path, name: str, source: str) -> Path:
    """The file of the shard called `name` in a plan, manifest or stats file (`source`):
    anything but a plain .tar file name (a path, `..`, a URL or `pipe:` command) is
    refused, so a shards directory cannot make mirkit read or write outside itself."""
    plain = isinstance(name, str) and Path(name).name == name and ":" not in name
    if not plain or not name.endswith(".tar"):
        raise ShardsError(
            f"refusing shard name {name!r} from {source}: shard names must be plain .tar "
            f"file names; rebuild the shards into a fresh directory"
        )
    return shards_dir / ITEMS / name


def shard_name(index: int) -> str:
    return f"items-{index:06d}.tar"
