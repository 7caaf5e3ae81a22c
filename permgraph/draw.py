"""Show a spec: a text table, Graphviz DOT of the data flow with groups coloured, or a PNG.

The drawing marks each op of the traced graph with every free group its output's axes belong to
(one ring per group, widest outermost; a legend names them), so residual streams, attention heads
and their head dims, and blocked regions stand out.
"""

from __future__ import annotations

from pathlib import Path

import networkx as nx

from permgraph.infer import Analysis
from permgraph.spec import PermSpec

__all__ = ["dataflow_graph", "spec_table", "to_dot", "save_png", "draw_figure"]

_PALETTE = ["#e6194b", "#3cb44b", "#4363d8", "#f58231", "#911eb4", "#42d4f4", "#f032e6", "#bfef45",
            "#469990", "#9a6324", "#800000", "#808000", "#000075", "#fabed4", "#ffd8b1", "#aaffc3"]
_SKIP = {"getitem", "aten.sym_size", "aten._assert_tensor_metadata"}


def spec_table(spec: PermSpec, show_blocked: bool = False, max_members: int | None = 4,
               max_width: int | None = 72) -> str:
    """A plain-text table of the groups: name, size, structure, members, blocked reason.

    For a terminal, each group lists ``max_members`` members and a cell is cut at ``max_width``
    characters, marked ``…`` where it is cut; ``None`` for either shows everything (a file)."""
    rows = [("group", "size", "structure", "members", "blocked")]
    groups = spec.groups if show_blocked else spec.free_groups
    for g in groups:
        names = [m.describe() for m in g.members]
        rows.append((g.name, str(g.size), g.structure, _members_cell(names, max_members, max_width), g.blocked or ""))
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    if max_width is not None:
        widths = [min(max_width, w) for w in widths]
    lines = []
    for i, r in enumerate(rows):
        cells = [_fit(r[k], widths[k]).ljust(widths[k]) for k in range(4)] + [r[4]]
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


def _members_cell(names: list[str], most: int | None, width: int | None) -> str:
    """Whole member names, as many as ``most`` and ``width`` allow, then how many were left out."""
    shown: list[str] = []
    for name in names[: most if most is not None else len(names)]:
        rest = len(names) - len(shown) - 1
        line = ", ".join([*shown, name]) + (f", … (+{rest})" if rest else "")
        if shown and width is not None and len(line) > width:
            break
        shown.append(name)
    rest = len(names) - len(shown)
    return ", ".join(shown) + (f", … (+{rest})" if rest else "")


def _fit(cell: str, width: int) -> str:
    """``cell`` within ``width`` characters, its last one ``…`` where it had to be cut."""
    return cell if len(cell) <= width else cell[: width - 1] + "…"


def dataflow_graph(analysis: Analysis, spec: PermSpec) -> nx.DiGraph:
    """The traced ops as a DiGraph; each node carries ``label``, ``groups`` (every free group its
    output's axes belong to, widest first: an attention block carries its heads and its head dim)
    and ``group`` (the widest of them, or None)."""
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
        groups = _node_groups(g, analysis.values.get(node), leaf_to_group)
        dg.add_node(node.name, label=label, groups=groups, group=groups[0] if groups else None,
                    is_param=node.op == "placeholder")  # fmt: skip
        for inp in node.all_input_nodes:
            if inp.name in dg:
                dg.add_edge(inp.name, node.name)
    return dg


def _node_groups(g, value, leaf_to_group: dict[int, str]) -> list[str]:
    """Every free group on the axes of one traced value (a single tensor's AxisLayouts), widest first."""
    sizes: dict[str, int] = {}
    for layout in value if isinstance(value, list) else []:
        for leaf in g.leaves(layout):
            group = leaf_to_group.get(leaf)
            if group:
                sizes[group] = max(sizes.get(group, 0), g.size(leaf))
    return sorted(sizes, key=lambda name: (-sizes[name], name))


def _colours(spec: PermSpec) -> dict[str, str]:
    return {g.name: _PALETTE[i % len(_PALETTE)] for i, g in enumerate(spec.free_groups)}


def to_dot(analysis: Analysis, spec: PermSpec) -> str:
    """Graphviz DOT text of the data flow: an op is filled with the colours of all its free groups
    (wedges for ops, stripes for parameters), its tooltip names them."""
    dg = dataflow_graph(analysis, spec)
    colours = _colours(spec)
    lines = ["digraph permgraph {", "  rankdir=TB; node [style=filled, fontsize=10];"]
    for n, data in dg.nodes(data=True):
        groups = data["groups"]
        shape = "box" if data["is_param"] else "ellipse"
        fill = ":".join(colours[g] for g in groups) or "#dddddd"
        style = "filled" if len(groups) < 2 else ("striped" if data["is_param"] else "wedged")
        tip = ("groups " + ", ".join(groups)) if groups else "no free group"
        lines.append(f'  "{n}" [label="{data["label"]}", fillcolor="{fill}", style={style}, shape={shape}, '
                     f'tooltip="{tip}"];')  # fmt: skip
    for a, b in dg.edges:
        lines.append(f'  "{a}" -> "{b}";')
    lines.append("}")
    return "\n".join(lines)


_NODE = 55  # marker area (points²) of the innermost ring
_LEGEND_MAX = 40  # groups listed by name in the legend; the rest are counted


def save_png(analysis: Analysis, spec: PermSpec, path: str | Path, max_nodes: int = 400) -> Path:
    """Draw the data flow top-down (matplotlib, no Graphviz needed). Each op is a set of concentric
    rings, one per free group on its output (the widest outermost), so an attention block shows its
    head group and its head-dim group; a legend names every group drawn.

    The PNG carries ``Software: permgraph`` in its metadata (a text chunk before the image
    data), so the command line can tell a file it wrote from a user's own PNG before
    overwriting it."""
    import matplotlib.pyplot as plt

    fig = draw_figure(analysis, spec, max_nodes)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=150, bbox_inches="tight", format="png", metadata={"Software": "permgraph"})
    plt.close(fig)
    return path


def draw_figure(analysis: Analysis, spec: PermSpec, max_nodes: int = 400):
    """The matplotlib figure :func:`save_png` writes (Agg backend; the caller closes it)."""
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
    height = max(6, 0.25 * (1 + max((d["layer"] for _, d in view.nodes(data=True)), default=0)))
    fig, ax = plt.subplots(figsize=(12, min(height, 60)))
    nx.draw_networkx_edges(view, pos, ax=ax, arrows=False, alpha=0.4, width=0.6, node_size=_NODE)
    drawn = _draw_rings(ax, view, pos, _colours(spec))
    nx.draw_networkx_labels(view, pos, ax=ax, font_size=5,
                            labels={n: d["label"] for n, d in view.nodes(data=True)})  # fmt: skip
    _legend(ax, spec, drawn)
    ax.set_title(f"{spec.summary()}\none ring per free group on an op's output (widest outermost); grey: none",
                 fontsize=8)  # fmt: skip
    ax.axis("off")
    return fig


def _draw_rings(ax, view: nx.DiGraph, pos: dict, colours: dict[str, str]) -> list[str]:
    """Concentric markers, outermost first; returns the groups drawn, in spec order."""
    nodes = list(view.nodes(data=True))
    depth = max((len(d["groups"]) for _, d in nodes), default=0)
    bare = [n for n, d in nodes if not d["groups"]]
    if bare:
        ax.scatter([pos[n][0] for n in bare], [pos[n][1] for n in bare], s=_NODE, c="#cccccc", zorder=2,
                   edgecolors="white", linewidths=0.3)  # fmt: skip
    seen: set[str] = set()
    for k in range(depth):
        ring = [(n, d["groups"]) for n, d in nodes if len(d["groups"]) > k]
        sizes = [_NODE * (1 + 1.8 * (len(groups) - 1 - k)) for _, groups in ring]
        ax.scatter([pos[n][0] for n, _ in ring], [pos[n][1] for n, _ in ring], s=sizes, zorder=2 + k,
                   c=[colours[groups[k]] for _, groups in ring], edgecolors="white", linewidths=0.3)  # fmt: skip
        seen.update(groups[k] for _, groups in ring)
    return [name for name in colours if name in seen]


def _legend(ax, spec: PermSpec, drawn: list[str]) -> None:
    from matplotlib.lines import Line2D

    colours = _colours(spec)
    sizes = {g.name: g.size for g in spec.free_groups}

    def mark(colour: str, text: str) -> Line2D:
        return Line2D([], [], marker="o", ls="", markersize=6, markerfacecolor=colour, markeredgecolor="white",
                      label=text)  # fmt: skip

    handles = [mark(colours[g], f"{g} ({sizes[g]})") for g in drawn[:_LEGEND_MAX]]
    if len(drawn) > _LEGEND_MAX:
        handles.append(Line2D([], [], ls="", label=f"… and {len(drawn) - _LEGEND_MAX} more groups"))
    handles.append(mark("#cccccc", "no free group"))
    ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize=6, frameon=False,
              title="free group (size)", title_fontsize=7)  # fmt: skip
