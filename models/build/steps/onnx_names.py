"""Deterministic names for the tensors and nodes tf2onnx makes up (convert venv; only the onnx protobuf API).

tf2onnx numbers the names it generates (`const_fold_opt__713`, `..._Conv2D1__60:0`, `Relu6__57_min__5`) from a
counter whose order changes from run to run, and orders the initializers that way: two conversions of one file differ
in bytes (and sha256), not in the graph. canonicalize() drops those counters and numbers the names anew in the order
the nodes first use them, and sorts the initializers and value infos by first use, so the ONNX file depends only on
its source.
"""
from __future__ import annotations

import re

COUNTER = re.compile(r"__\d+")  # tf2onnx utils.make_name appends "__<counter>", also to names it made ("a__57_min__5")
PORT = re.compile(r"^(.*?)((?::\d+)?)$")


def canonicalize(model) -> int:
    """Renumber the generated names of model.graph in place (graph inputs and outputs keep theirs); returns how
    many names were renumbered."""
    g = model.graph
    keep = {v.name for v in list(g.input) + list(g.output)}
    generated: dict[str, None] = {}  # in order of first use
    for n in g.node:
        for name in (n.name, *n.input, *n.output):
            if name and name not in keep and COUNTER.search(name):
                generated.setdefault(name)
    taken = {x for n in g.node for x in (n.name, *n.input, *n.output)} | {t.name for t in g.initializer}
    taken -= set(generated)
    renames: dict[str, str] = {}
    i = 0
    for name in generated:
        body, port = PORT.match(name).groups()
        while (new := f"{COUNTER.sub('', body)}__{i}{port}") in taken:
            i += 1
        renames[name] = new
        taken.add(new)
        i += 1
    for n in g.node:
        n.name = renames.get(n.name, n.name)
        n.input[:] = [renames.get(x, x) for x in n.input]
        n.output[:] = [renames.get(x, x) for x in n.output]
    first_use: dict[str, int] = {}
    for n in g.node:
        for x in n.input:
            first_use.setdefault(x, len(first_use))
    for table in (g.initializer, g.value_info):
        items = [type(t).FromString(t.SerializeToString()) for t in table]
        for t in items:
            t.name = renames.get(t.name, t.name)
        items.sort(key=lambda t: (first_use.get(t.name, len(first_use)), t.name))
        del table[:]
        table.extend(items)
    return len(renames)
