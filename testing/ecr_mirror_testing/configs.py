"""Mirror configs of a given size, written as a user writes one (tests and bench/)."""

from __future__ import annotations


def realistic_config(entries: int, tags_per_entry: int = 2) -> str:
    """A config as a user writes one: an entry per upstream repository."""
    lines = ["defaults:", "  targetPrefix: mirror", "images:"]
    for n in range(entries):
        tags = ", ".join(f'"{n % 7}.{t}"' for t in range(tags_per_entry))
        lines += [f"  - source: team{n % 40}/service-{n:05d}", f"    tags: [{tags}]"]
    return "\n".join(lines) + "\n"
