"""A fleet host runs exactly the main's selection (`--mproc-selection FILE`, set by the main):
its collection is narrowed and ordered to the file's node ids, after every other plugin has
modified it. So what only the main can compute (`--lf` from its cache, a plugin's reordering)
holds on the hosts too; a test the host lacks makes the main refuse the node, naming it."""

from __future__ import annotations


def apply(config, items: list, path: str) -> None:
    with open(path) as f:
        wanted = [line.rstrip("\n") for line in f if line.strip()]
    by_id = {item.nodeid: item for item in items}
    chosen = [by_id[i] for i in wanted if i in by_id]
    keep = {id(item) for item in chosen}
    deselected = [item for item in items if id(item) not in keep]
    if deselected:
        config.hook.pytest_deselected(items=deselected)
    items[:] = chosen
