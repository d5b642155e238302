"""Structural ignored scopes for NNCF: which layers of a model stay FP32, named by their place in the graph.

Node names differ between formats (OpenVINO IR, the onnx2torch copy QAT trains) and between conversions, so the
manifest's `[quantization.ignored_scope]` says *where* a layer is, and `resolve` turns that into the node names of
one NNCF graph (OpenVINO or torch backend; runs in the quant / train build venvs, no project imports):

  first_convs = N           the first N convolutions of the shared backbone (the ones every output depends on)
  head_convs  = [OUTPUT..]  the convolution(s) that write each named output (reached from it through no other conv)
  branches    = [[OUTPUT..]..]  per group: every op that feeds only the group's outputs (the branch computing
                            just them), e.g. [["Identity", "Identity_1", "Identity_4"]] = the regression branch
  upsampling  = true        every Interpolate / Resize op (the decoder's upsampling inputs stay FP32)

`outputs` maps the graph's output nodes to the model's output names (Identity, Identity_1, ...).
"""
from __future__ import annotations

SELECTORS = ("first_convs", "head_convs", "branches", "upsampling")


def is_conv(node) -> bool:
    m = node.metatype.__name__
    return "Conv" in m and "Transpose" not in m and "Noop" not in m and "Convert" not in m  # not OVConvertMetatype


def is_upsampling(node) -> bool:
    m = node.metatype.__name__
    return "Interpolate" in m or "Resize" in m


def _is_const(node) -> bool:
    m = node.metatype.__name__
    return "Const" in m


def reaches(graph, outputs: dict[str, str]) -> dict[str, frozenset[str]]:
    """node name -> the model outputs it feeds (reverse topological sweep)."""
    order = graph.topological_sort()
    out: dict[str, frozenset[str]] = {}
    for n in reversed(order):
        s = set()
        if n.node_name in outputs:
            s.add(outputs[n.node_name])
        for nxt in graph.get_next_nodes(n):
            s |= out.get(nxt.node_name, frozenset())
        out[n.node_name] = frozenset(s)
    return out


def backbone_convs(graph, outputs: dict[str, str]) -> list[str]:
    """Convolutions every output depends on, in topological order (the shared backbone)."""
    r = reaches(graph, outputs)
    every = frozenset(outputs.values())
    return [n.node_name for n in graph.topological_sort() if is_conv(n) and r[n.node_name] == every]


def head_convs(graph, outputs: dict[str, str], names: list[str]) -> list[str]:
    """The convolutions that write the named outputs: walk back from each through non-conv ops."""
    by_name = {v: k for k, v in outputs.items()}
    found, seen = [], set()
    stack = [graph.get_node_by_name(by_name[o]) for o in names]
    while stack:
        n = stack.pop()
        if n.node_name in seen:
            continue
        seen.add(n.node_name)
        if is_conv(n):
            found.append(n.node_name)
            continue
        stack.extend(p for p in graph.get_previous_nodes(n) if not _is_const(p))
    return sorted(found)


def branch_nodes(graph, outputs: dict[str, str], names: list[str]) -> list[str]:
    """Every op that feeds only the named outputs (constants and the output nodes themselves left out)."""
    r = reaches(graph, outputs)
    keep = frozenset(names)
    return sorted(n.node_name for n in graph.get_all_nodes()
                  if r[n.node_name] and r[n.node_name] <= keep and not _is_const(n) and n.node_name not in outputs)


def validate(scope: dict, output_names: list[str] | None = None) -> dict:
    """Check a scope table (keys, types, output names); returns it. Raises ValueError naming the key."""
    for k in scope:
        if k not in SELECTORS and k != "note":
            raise ValueError(f"ignored_scope.{k}: unknown selector (allowed: {', '.join(SELECTORS)}, note)")
    n = scope.get("first_convs", 0)
    if not isinstance(n, int) or isinstance(n, bool) or n < 0:
        raise ValueError(f"ignored_scope.first_convs: expected an integer >= 0, got {n!r}")
    groups = [("head_convs", scope.get("head_convs", []))]
    br = scope.get("branches", [])
    if not isinstance(br, list) or not all(isinstance(g, list) and g for g in br):
        raise ValueError(f"ignored_scope.branches: expected a list of output-name lists, got {br!r}")
    groups += [("branches", g) for g in br]
    for k, v in groups:
        if not isinstance(v, list) or not all(isinstance(x, str) for x in v):
            raise ValueError(f"ignored_scope.{k}: expected a list of output names, got {v!r}")
        bad = [x for x in v if output_names is not None and x not in output_names]
        if bad:
            raise ValueError(f"ignored_scope.{k}: no output {bad[0]!r} (outputs: {', '.join(output_names or [])})")
    if not isinstance(scope.get("upsampling", False), bool):
        raise ValueError(f"ignored_scope.upsampling: expected true or false, got {scope['upsampling']!r}")
    return scope


def resolve(graph, outputs: dict[str, str], scope: dict) -> list[str]:
    """Node names of `graph` (an NNCFGraph) that the scope keeps FP32, sorted."""
    validate(scope, sorted(outputs.values()))
    names: set[str] = set()
    k = scope.get("first_convs", 0)
    if k:
        convs = backbone_convs(graph, outputs)
        if k > len(convs):
            raise ValueError(f"ignored_scope.first_convs: {k} > the {len(convs)} backbone convolutions")
        names |= set(convs[:k])
    if scope.get("head_convs"):
        names |= set(head_convs(graph, outputs, scope["head_convs"]))
    for group in scope.get("branches", []):
        names |= set(branch_nodes(graph, outputs, group))
    if scope.get("upsampling"):
        names |= {n.node_name for n in graph.get_all_nodes() if is_upsampling(n)}
    return sorted(names)


def openvino_graph(model):
    """(NNCFGraph, {output node name: model output name}) of an OpenVINO model; output names are the tensor
    names of the Results (Identity, ...) when they have one, else the Result's position `output_<i>`."""
    from nncf.openvino.graph.nncf_graph_builder import GraphConverter

    g = GraphConverter.create_nncf_graph(model)
    outs = {}
    for i, r in enumerate(model.get_results()):
        tensor = sorted(r.output(0).get_names() | r.input_value(0).get_names())
        canon = [t for t in tensor if t.startswith("Identity")]
        outs[r.get_friendly_name()] = canon[0] if canon else f"output_{i}"
    return g, outs


def torch_graph(model, example_input, output_names: list[str]):
    """(NNCFGraph, {output node: model output name}) of a torch module returning a tuple in output_names order."""
    from nncf.torch.model_creation import wrap_model

    g = wrap_model(model, example_input, trace_parameters=True).get_graph()
    nodes = [n.node_name for n in g.get_output_nodes()]
    outs = {f"output_{i}": name for i, name in enumerate(output_names)}
    missing = sorted(set(outs) - set(nodes))
    if missing:
        raise ValueError(f"torch graph has no output node(s) {missing} (found {nodes})")
    return g, outs
