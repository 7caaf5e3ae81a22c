"""Show a spec: a text table, Graphviz DOT of the data flow with groups coloured, or a PNG.

The drawing colours each op of the traced graph by the free group its widest permutable
axis belongs to, so residual streams, attention heads and blocked regions stand out.
"""

from __future__ import annotations

from pathlib import Path

import networkx as nx

from permgraph.infer import Analysis
from permgraph.spec import PermSpec

__all__ = ["dataflow_graph", "spec_table", "to_dot", "save_png"]

_PALETTE = ["#e6194b", "#3cb44b", "#4363d8", "#f58231", "#911eb4", "#42d4f4", "#f032e6", "#bfef45",
            "#469990", "#9a6324", "#800000", "#808000", "#000075", "#fabed4", "#ffd8b1", "#aaffc3"]
_SKIP = {"getitem", "aten.sym_size", "aten._assert_tensor_metadata"}


def spec_table(spec: PermSpec, show_blocked: bool = False, max_members: int = 4) -> str:
    """A plain-text table of the groups: name, size, structure, members, blocked reason."""
    rows = [("group", "size", "structure", "members", "blocked")]
    groups = spec.groups if show_blocked else spec.free_groups
    for g in groups:
        names = [m.describe() for m in g.members]
        shown = ", ".join(names[:max_members]) + (f", … (+{len(names) - max_members})" if len(names) > max_members else "")
        rows.append((g.name, str(g.size), g.structure, shown, g.blocked or ""))
    widths = [min(60, max(len(r[i]) for r in rows)) for i in range(4)]
    lines = []
    for i, r in enumerate(rows):
        cells = [r[k][: widths[k]].ljust(widths[k]) for k in range(4)] + [r[4]]
        lines.append("  ".join(cells).rstrip())
        if i == 0:
            lines.append("  ".join("-" * w for w in widths) + "  -------")
    lines.append("")
    lines.append(spec.summary())
    if not show_blocked:
        reasons: dict[str, int] = {}
        for g in spec.blocked_groups:
            key = (g.blocked or "").split(";")[0].split(": ")[-1]
            reasons[key] = reasons.get(key, 0) + 1
        if reasons:
            lines.append("blocked groups by reason (see --blocked): " + "; ".join(
                f"{k} ×{v}" for k, v in sorted(reasons.items(), key=lambda kv: -kv[1])))
    return "\n".join(lines)


def dataflow_graph(analysis: Analysis, spec: PermSpec) -> nx.DiGraph:
    """The traced ops as a DiGraph; each node carries ``label`` and ``group`` (or None)."""
    g = analysis.graph
    leaf_to_group: dict[int, str] = {}
    for group in spec.free_groups:
        for m in group.members:
            for layout in analysis.param_layouts.get(m.param, [])[m.axis: m.axis + 1]:
                for leaf in g.leaves(layout):
                    if g.size(leaf) == group.size and not g.blocked_reasons(leaf):
                        leaf_to_group.setdefault(leaf, group.name)
    dg = nx.DiGraph()
    for node in analysis.traced.graph.nodes:
        if node.op not in ("call_function", "placeholder"):
            continue
        name = str(getattr(node.target, "overloadpacket", node.target))
        if name in _SKIP:
            continue
        if node.op == "placeholder":
            key = analysis.traced.param_of.get(node.name)
            if key is None and node.name not in analysis.traced.user_inputs:
                continue
            label = key or f"input {node.name}"
        else:
            label = name.replace("aten.", "")
        best, best_size = None, 0
        value = analysis.values.get(node)
        layouts = value if isinstance(value, list) else []  # a single tensor's AxisLayouts
        for layout in layouts:
            for leaf in g.leaves(layout):
                group = leaf_to_group.get(leaf)
                if group and g.size(leaf) > best_size:
                    best, best_size = group, g.size(leaf)
        dg.add_node(node.name, label=label, group=best, is_param=node.op == "placeholder")
        for inp in node.all_input_nodes:
            if inp.name in dg:
                dg.add_edge(inp.name, node.name)
    return dg


def _colours(spec: PermSpec) -> dict[str, str]:
    return {g.name: _PALETTE[i % len(_PALETTE)] for i, g in enumerate(spec.free_groups)}


def to_dot(analysis: Analysis, spec: PermSpec) -> str:
    """Graphviz DOT text of the data flow, ops filled with their free group's colour."""
    dg = dataflow_graph(analysis, spec)
    colours = _colours(spec)
    lines = ["digraph permgraph {", "  rankdir=TB; node [style=filled, fontsize=10];"]
    for n, data in dg.nodes(data=True):
        colour = colours.get(data["group"], "#dddddd")
        shape = "box" if data["is_param"] else "ellipse"
        tip = f"group {data['group']}" if data["group"] else "no free group"
        lines.append(f'  "{n}" [label="{data["label"]}", fillcolor="{colour}", shape={shape}, tooltip="{tip}"];')
    for a, b in dg.edges:
        lines.append(f'  "{a}" -> "{b}";')
    lines.append("}")
    return "\n".join(lines)


def save_png(analysis: Analysis, spec: PermSpec, path: str | Path, max_nodes: int = 400) -> Path:
    """Draw the data flow top-down with groups coloured (matplotlib, no Graphviz needed).

    The PNG carries ``Software: permgraph`` in its metadata (a text chunk before the image
    data), so the command line can tell a file it wrote from a user's own PNG before
    overwriting it."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    dg = dataflow_graph(analysis, spec)
    ops = [n for n, d in dg.nodes(data=True) if not d["is_param"]]
    view = dg.subgraph(ops[:max_nodes]).copy()
    for layer, nodes in enumerate(nx.topological_generations(view)):
        for n in nodes:
            view.nodes[n]["layer"] = layer
    pos = nx.multipartite_layout(view, subset_key="layer", align="horizontal")
    pos = {n: (x, -y) for n, (x, y) in pos.items()}
    colours = _colours(spec)
    height = max(6, 0.25 * (1 + max((d["layer"] for _, d in view.nodes(data=True)), default=0)))
    fig, ax = plt.subplots(figsize=(10, min(height, 60)))
    nx.draw_networkx_edges(view, pos, ax=ax, arrows=False, alpha=0.4, width=0.6)
    nx.draw_networkx_nodes(view, pos, ax=ax, node_size=60,
                           node_color=[colours.get(d["group"], "#cccccc") for _, d in view.nodes(data=True)])
    nx.draw_networkx_labels(view, pos, ax=ax, font_size=5,
                            labels={n: d["label"] for n, d in view.nodes(data=True)})
    ax.set_title(f"{spec.summary()}\ncoloured by free group; grey: no free group", fontsize=8)
    ax.axis("off")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=150, bbox_inches="tight", format="png", metadata={"Software": "permgraph"})
    plt.close(fig)
    return path
