"""Seed 002's threshold tree search on the Hugging Face backend, with the seed's decisions and
without its copies.

The search (exactly the seed's; README "tokentui tree" has the definitions): a breadth-first
queue starts with the root (the prompt, p = 1, depth 0). While the queue is not empty and fewer
than `max_completed_paths` paths are finished: compute the threshold T from the queue's length,
take the first node; a node at `max_depth` or whose token is an end-of-sequence token is finished
(a completed path) and not expanded; any other node records its candidates (p >
`candidate_threshold`, most probable first, at most 10) and gets a child for every token with
p > T (none: its most probable token), most probable first. tokentui adds a budget: the search
stops once it has made `max_nodes` nodes (the node being expanded keeps the children made so far),
or when cancelled. Equal probabilities are ordered by token id (the seed leaves that open).

Every node but the root becomes a one-step branch (forced token), so it carries the full `Step`
of the distribution it was chosen from (its parent's): p, rank, entropy, top-k, lens. Branches are
created in the search's order, so branch ids follow the seed's node creation order.

Where the seed clones the parent's whole KV cache for every child and runs one batch-1 forward per
child, the search here keeps ONE key/value buffer per layer holding the prefix once and one slot
per node (`_SlotLayer`, written in place, never copied except when it grows), and computes the
distributions of many queued nodes — children of different parents, at different depths — in one
forward: each node is a query row that attends, through a 4-D attention mask, to the prefix, its
ancestors' slots and its own slot, at its own position id (tree attention). A node's distribution
is only needed when it is taken from the queue, so a forward is run lazily for the first queued
nodes that will need one (up to `BATCH`): the decisions are the seed's, in the seed's order, and
nodes the seed would forward for nothing (finished ones, those still queued at the end) are never
forwarded. Models whose cache or attention cannot do this (sliding-window layers, attention
kernels without arbitrary masks) fall back to the seed's way (one forward per node over a forked
or copied cache), and say so in a Progress event.
"""

from __future__ import annotations

import copy
import math
import threading
from collections import deque
from collections.abc import Generator, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from transformers.cache_utils import DynamicCache, DynamicLayer

from tokentui.core import tree
from tokentui.core.params import TreeParams
from tokentui.core.run import Run
from tokentui.core.step import Step
from tokentui.engine.errors import EngineError
from tokentui.engine.events import (
    BranchStarted,
    Event,
    LensEvent,
    Progress,
    RunStarted,
    StepEvent,
    TreeProgress,
    TreeStarted,
    apply_tree_progress,
)
from tokentui.engine.hf.backend import HFBackend, cache_of
from tokentui.engine.hf.kv_cache import cache_length, fork_cache
from tokentui.engine.hf.measures import (
    Packer,
    TokenInputs,
    host_arrays,
    layer_arrays,
    layer_finals,
    lens_names,
    lens_values,
    per_chosen_measures,
    require_finite,
    token_values,
)

# A run file's header (≤ 16 MB) holds about this many tree nodes (a branch and its candidates,
# ~1 kB each): a search stops there so that its run can be loaded again.
RUN_NODES = 12_000
BATCH = 32  # queued nodes whose distributions one forward computes (tree attention)
TREE_ATTENTION = ("sdpa", "eager")  # attention implementations that take an arbitrary 4-D mask
ALIBI_FAMILIES = ("bloom", "mpt")  # position bias from the 2-D mask: the shared-buffer forward breaks it
# positions not taken from the position ids a tree passes: RoBERTa-likes start theirs after the
# padding id (a trial's tree probabilities were wrong), MBart's and Marian's decoders make their own
OWN_POSITION_FAMILIES = ("mbart", "marian", "roberta", "xlm-roberta", "xlm-roberta-xl", "camembert",
                         "roberta-prelayernorm", "xmod", "data2vec-text")  # fmt: skip


class _SlotLayer(DynamicLayer):
    """A layer's keys and values in one preallocated buffer: the prefix first, then one slot per
    node in the order nodes were forwarded. `update` writes the new slots in place and returns a
    view of the used part, so nothing already there is ever copied or written again (the buffer
    doubles when full: amortised one copy per slot)."""

    def __init__(self, keys: torch.Tensor, values: torch.Tensor, capacity: int) -> None:
        super().__init__()
        self.used = keys.shape[-2]
        capacity = max(capacity, self.used + 1)
        self._k = keys.new_empty(*keys.shape[:-2], capacity, keys.shape[-1])
        self._v = values.new_empty(*values.shape[:-2], capacity, values.shape[-1])
        self._k[..., : self.used, :] = keys
        self._v[..., : self.used, :] = values
        self.device = keys.device
        self.is_initialized = True
        self._views()

    def _views(self) -> None:
        self.keys, self.values = self._k[..., : self.used, :], self._v[..., : self.used, :]

    def update(self, key_states: torch.Tensor, value_states: torch.Tensor, *args, **kwargs):
        n = key_states.shape[-2]
        if self.used + n > self._k.shape[-2]:
            cap = max(2 * self._k.shape[-2], self.used + n)
            for name in ("_k", "_v"):
                old = getattr(self, name)
                new = old.new_empty(*old.shape[:-2], cap, old.shape[-1])
                new[..., : self.used, :] = old[..., : self.used, :]
                setattr(self, name, new)
        self._k[..., self.used : self.used + n, :] = key_states
        self._v[..., self.used : self.used + n, :] = value_states
        self.used += n
        self._views()
        return self.keys, self.values

    def get_seq_length(self) -> int:
        return self.used

    @property
    def nbytes(self) -> int:
        return self._k.nbytes + self._v.nbytes


def tree_attention_problem(model: Any, cache: Any) -> str | None:
    """Why this model's cache cannot be shared as one slot buffer (None: it can)."""
    impl = getattr(model.config, "_attn_implementation", None)
    if impl not in TREE_ATTENTION:
        return f"its attention ({impl}) takes no arbitrary mask"
    if cache_length(cache) is None:
        return "its cache holds a state, not positions"
    if not isinstance(cache, DynamicCache) or any(type(layer) is not DynamicLayer for layer in cache.layers):
        return f"its cache ({type(cache).__name__}) has sliding-window or other special layers"
    cfg = model.config.get_text_config() if hasattr(model.config, "get_text_config") else model.config
    if any(t != "full_attention" for t in (getattr(cfg, "layer_types", None) or ())):
        return "some of its layers attend through a sliding window"
    if "local" in (getattr(cfg, "attention_layers", None) or ()):  # GPT-Neo's way of saying so: its
        # local window counts the buffer's slots, not a node's path (a trial's tree was wrong past it)
        return "some of its layers attend through a local window"
    if getattr(cfg, "alibi", False) or getattr(cfg, "model_type", None) in ALIBI_FAMILIES:
        return "its ALiBi position bias is built from a padding mask, not a tree's"
    if getattr(cfg, "model_type", None) in OWN_POSITION_FAMILIES:
        return "it numbers positions its own way, not by the position ids a tree passes"
    return None


@dataclass(eq=False)
class _Node:
    branch: int | None  # None: the search's root
    token: int | None
    depth: int
    parent: _Node | None
    slot: int = -1  # its key/value slot in the shared buffer (-1: not forwarded, or the root)
    logits: torch.Tensor | None = None  # its own next-token logits [V] (a row of its forward's output)
    hidden: torch.Tensor | None = None  # its hidden states at layers 1…L-1 [L-1, d] (the lens's input)
    attn: torch.Tensor | None = None  # its attention entropy per layer [L] (when the run records it)
    cache: Any = None  # fallback only: the cache after its token


@dataclass(eq=False)
class _Lensing:
    """An expanded node waiting for the lens: its children's layers 1…L-1 are computed in batches
    of nodes once their tokens are known (a child's rank and surprisal at each layer depend on
    its own token; the rest of a node's lens values are shared by its children)."""

    hidden: torch.Tensor  # the node's [L-1, d]
    logits: torch.Tensor  # the node's own next-token logits [V]
    tokens: list[int]  # its children's tokens
    branches: list[int]  # their branches (one step each, at `position`)
    position: int
    finals: list[dict[str, np.ndarray]]  # each child's layer-L values (host)


class TreeSearch:
    """One search over a run, driven by `events()` (see the module's docstring)."""

    def __init__(
        self,
        backend: HFBackend,
        run: Run,
        params: TreeParams,
        cancel: threading.Event | None = None,
        batch: int = BATCH,
        shared: bool = True,
        measure: bool = False,
    ) -> None:
        """`shared` False forces the one-forward-per-node fallback (tests compare the two);
        `measure` tracks `peak_bytes` (benchmarks)."""
        params.check()
        self.b, self.run, self.params = backend, run, params
        self.cancel = cancel or threading.Event()
        self.batch = max(1, batch)
        self.shared = shared
        self.measure = measure
        self.eos = set(backend.lm.eos_ids)
        self.packer = Packer(run.layout)
        self.id_measures = self.packer.id_measures
        self.lens_on = backend.lens_chunk > 0 and run.n_layers > 1
        self.attention = backend._attention(run)
        self.lensing: list[_Lensing] = []  # expanded nodes whose children await the lens
        self.cache: DynamicCache | None = None  # the shared slot buffer (None: fallback)
        self.prefix_len = 0
        self.peak_bytes = 0  # most bytes of caches and distributions held at once (benchmarks read it)
        self.index = -1
        self.nodes = 0
        self.completed = 0

    # --- the root ----------------------------------------------------------------------------
    def events(
        self, prompt_ids: list[int] | None = None, branch: int = 0, position: int | None = None
    ) -> Iterator[Event]:
        """Score `prompt_ids` into the (new, empty) run and grow the tree from the prompt's end;
        or, without them, grow it from `position` (default: its end) of the run's `branch`."""
        with torch.inference_mode():
            yield from self._events(prompt_ids, branch, position)

    def _events(self, prompt_ids: list[int] | None, branch: int, position: int | None) -> Iterator[Event]:
        b, run = self.b, self.run
        if prompt_ids is not None:
            if run.branches:
                raise EngineError("a tree from a prompt needs a new run")
            b._check_context(len(prompt_ids), "the prompt")
            out = b._forward(torch.tensor([prompt_ids], device=b.device), attention=self.attention)
            yield from b._teacher_forced(run, prompt_ids, out, self.cancel)
            yield RunStarted(run.copy())
            root_branch, root_position = None, len(prompt_ids)
        else:
            length = run.length(branch)
            root_branch, root_position = branch, length if position is None else position
            if not 1 <= root_position <= length:
                raise EngineError(f"position {root_position} is out of range 1..{length} of branch {branch}")
            prefix = run.sequence(branch)[:root_position]
            b._check_context(root_position, "the prefix")
            cached, used = b.caches.best(prefix, root_position - 1)
            out = b._forward(torch.tensor([prefix[used:].tolist()], device=b.device), cached, attention=self.attention)
        if b.context is not None and root_position >= b.context:
            raise EngineError(f"the prefix fills the model's context ({b.context} positions): no room for a tree")
        budget = min(self.params.max_nodes, RUN_NODES - len(run.branches))
        if budget < 1:
            raise EngineError(f"the run already has {len(run.branches)} branches: no room for a tree in its file")
        self.budget = budget
        self.root_position = root_position
        # a node at depth d holds position root_position + d - 1; its children need room after it
        self.max_depth = self.params.max_depth
        if b.context is not None and root_position + self.max_depth > b.context:
            self.max_depth = b.context - root_position
            yield Progress(f"the model's context is {b.context} positions: the tree stops at depth {self.max_depth}")
        search = tree.new_search(self.params, root_branch, root_position, len(run.branches))
        self.index = tree.add_search(run, search)
        yield TreeStarted(run.id, self.index, search)

        root = _Node(root_branch, None, 0, None)
        cache = cache_of(out)
        root.logits = out.logits[0, -1].clone()  # (a view would keep every prompt position's logits)
        if self.lens_on:
            root.hidden = torch.stack([h[0, -1] for h in b.block_outputs(out.hidden_states)])  # [L-1, d]
        if self.attention:
            root.attn = out.attention_entropy[-1]
        if not hasattr(cache, "get_seq_length"):  # (xLSTM's: a state, not keys and values to copy per node)
            raise EngineError(
                f"a tree search forks the model's key-value cache at every node; "
                f"{type(b.model).__name__}'s cache ({type(cache).__name__}) cannot be forked"
            )
        problem = tree_attention_problem(b.model, cache) if self.shared else "the shared cache is turned off"
        if problem is None:
            self.prefix_len = cache.get_seq_length()
            shared = DynamicCache()
            # Room for every node the search may forward. On a CPU the system commits the pages only
            # as slots are written, so reserving it all costs nothing and the buffer never grows
            # (growing copies it); an accelerator allocates for real: start small, double.
            cap = self.prefix_len + (self.budget if b.device.type == "cpu" else min(self.budget, 4 * self.batch))
            shared.layers = [_SlotLayer(layer.keys, layer.values, cap) for layer in cache.layers]
            self.cache = shared
        else:
            root.cache = cache
            yield Progress(f"tree search: {problem}; one forward per node (the prefix cache is copied per child)")
        del out, cache
        yield from self._search(root)

    # --- the search --------------------------------------------------------------------------
    def _search(self, root: _Node) -> Iterator[Event]:
        p, run = self.params, self.run
        queue: deque[_Node] = deque([root])
        stopped = "exhausted"
        threshold = p.threshold(1)
        try:
            while queue:
                if self.completed >= p.max_completed_paths:
                    stopped = "completed"
                    break
                if self.cancel.is_set():
                    stopped = "cancelled"
                    break
                threshold = p.threshold(len(queue))
                if queue[0].logits is None and not self._finishes(queue[0]):
                    self._forward_front(queue)  # (the fallback computed it when the node was made)
                if self.measure:
                    self._account(queue)
                node = queue.popleft()
                if self._finishes(node):
                    self.completed += 1
                    node.logits = node.hidden = node.attn = node.cache = None
                    ev = self._progress(node, True, None, (), (), len(queue), threshold)
                    apply_tree_progress(run, ev)
                    yield ev
                    continue
                children, candidates = yield from self._expand(node, threshold, queue)
                statuses = tuple("eos" if c.token in self.eos else "length" for c in children)
                ev = self._progress(
                    node,
                    False,
                    candidates,
                    tuple(c.branch for c in children),
                    statuses,
                    len(queue),
                    threshold,
                )
                apply_tree_progress(run, ev)
                yield ev
                if self.nodes >= self.budget:
                    stopped = "max_nodes"
                    break
        except EngineError:
            self.lensing.clear()  # (their steps keep layer L; the lens of the others is lost with the error)
            yield self._end("error", queue, threshold)
            raise
        if stopped == "exhausted" and self.completed >= p.max_completed_paths:
            stopped = "completed"  # the last path asked for ended as the queue emptied: both hold, this is the goal
        yield from self._flush_lens()
        yield self._end(stopped, queue, threshold)

    def _end(self, stopped: str, queue: deque[_Node], threshold: float) -> TreeProgress:
        """The search's last event (applied to the run): why it stopped, the final counts."""
        ev = TreeProgress(
            self.run.id,
            self.index,
            None,
            False,
            None,
            (),
            (),
            self.nodes,
            len(queue),
            self.completed,
            threshold,
            stopped,
            False,
        )
        apply_tree_progress(self.run, ev)
        queue.clear()
        self.cache = None
        return ev

    def _progress(
        self, node: _Node, finished: bool, cands, children, statuses, open_: int, threshold: float
    ) -> TreeProgress:
        return TreeProgress(
            self.run.id,
            self.index,
            node.branch if node.depth else None,
            finished,
            cands,
            children,
            statuses,
            self.nodes,
            open_,
            self.completed,
            threshold,
        )

    def _finishes(self, node: _Node) -> bool:
        """Whether the node ends a path when it is taken from the queue (it needs no distribution)."""
        return node.depth >= self.max_depth or (node.token is not None and node.token in self.eos)

    def _expand(
        self, node: _Node, threshold: float, queue: deque[_Node]
    ) -> Generator[Event, None, tuple[list[_Node], tuple[tuple[int, float], ...]]]:
        """Make the node's children (their events; they join the queue); returns them and the
        node's candidates."""
        b, run, p = self.b, self.run, self.params
        assert node.logits is not None
        # the node's distribution, one row at a time (a batch's [n, V] log-probs would be a second
        # copy of its logits for the whole time its nodes wait in the queue)
        logp = torch.log_softmax(node.logits.float(), -1)
        probs = logp.exp()
        above = int((probs > threshold).sum())
        top_p, top_ids = probs.topk(min(probs.shape[0], max(tree.MAX_CANDIDATES, above, 1)))
        # equal probabilities: lower token id first (topk leaves their order open)
        order = sorted(zip(top_p.cpu().tolist(), top_ids.cpu().tolist()), key=lambda c: (-c[0], c[1]))
        candidates = tuple((t, pr) for pr, t in order[: tree.MAX_CANDIDATES] if pr > np.float32(p.candidate_threshold))
        chosen = [t for _pr, t in order[: max(above, 1)]][: self.budget - self.nodes]
        n = len(chosen)
        x = TokenInputs(
            logp[None].expand(n, -1),
            torch.tensor(chosen, device=b.device),
            torch.full((n,), math.nan, device=b.device),
            run.k,
        )
        values_d = token_values(x)
        values_d.update(layer_finals(x, values_d, run.layout))
        if self.attention:
            assert node.attn is not None
            values_d["attention_entropy"] = node.attn[None].expand(n, -1)
        host_rows = self.packer.pack_rows(values_d, n).cpu().numpy()  # the expansion's one transfer
        rows = [self.packer.unpack(r)[0] for r in host_rows]
        final = {name: np.stack([r[name] for r in rows]) for name in rows[0]}
        require_finite(final, " at a tree node")
        layers = layer_arrays(None, final, n, run.layout)  # layers 1…L-1: `_flush_lens`
        children: list[_Node] = []
        parent_branch = node.branch
        fork = self.root_position if node.depth == 0 or node.branch is None else run.length(node.branch)
        extra_tokens = b._note_tokens(run, np.asarray([t for t, _p in candidates], dtype=np.int64))
        for i, token in enumerate(chosen):
            if node.depth == 0 and parent_branch is None:  # a tree from the prompt: the root branch first
                br = run.add_branch(None if not run.branches else 0, fork)
            else:
                assert parent_branch is not None
                br = run.add_branch(parent_branch, fork)
            yield BranchStarted(run.id, br.id, br.parent, fork, None)
            values: dict[str, Any] = {name: v for name, v in rows[i].items() if name != "token_id"}
            for name, arr in layers.items():
                values[name] = arr[i]
            step = Step(fork, token, values, "forced")
            run.append_step(br.id, step)
            added = b._note_tokens(run, [token], *(values[name] for name in self.id_measures))
            if i == 0:
                added.update(extra_tokens)
            yield StepEvent(run.id, br.id, step, added)
            self.nodes += 1
            child = _Node(br.id, token, node.depth + 1, node)
            children.append(child)
            queue.append(child)
        if self.lens_on and node.hidden is not None and node.logits is not None:
            names = [name for name in lens_names() if name in final]
            self.lensing.append(
                _Lensing(
                    node.hidden,
                    node.logits,
                    chosen,
                    [c.branch for c in children if c.branch is not None],
                    fork,
                    [{name: r[name] for name in names} for r in rows],
                )
            )
        if self.cache is None:
            self._forward_children(node, children)
        node.logits = node.hidden = node.attn = node.cache = None
        if len(self.lensing) >= self.batch:
            yield from self._flush_lens()
        return children, candidates

    def _flush_lens(self) -> Iterator[Event]:
        """The lens of the waiting nodes in one pass (each node's rows once, its children's tokens
        as the chosen ones): fills in their children's layers 1…L-1 and reports them."""
        if not self.lensing:
            return
        b, run = self.b, self.run
        todo, self.lensing = self.lensing, []
        chosen = torch.full((len(todo), max(len(t.tokens) for t in todo)), -1, dtype=torch.long)
        for i, t in enumerate(todo):
            chosen[i, : len(t.tokens)] = torch.tensor(t.tokens)
        inputs = b.lens_inputs(run, chosen.to(b.device), torch.stack([t.logits for t in todo]))
        hidden = torch.stack([t.hidden for t in todo])  # [nodes, L-1, d]
        lensed = host_arrays(lens_values(b.lens, hidden, inputs, set(run.layout.names)))
        per_child = per_chosen_measures()
        ids = [m.name for m in run.layout.measures if m.is_token_id and m.name in lensed]
        for i, t in enumerate(todo):
            for c, (branch, finals) in enumerate(zip(t.branches, t.finals)):
                one = {name: (v[i, :, c] if name in per_child else v[i])[None] for name, v in lensed.items()}
                values = layer_arrays(one, {name: np.asarray(v)[None] for name, v in finals.items()}, 1, run.layout)
                run.set_layer_values(branch, t.position, values)
                added = b._note_tokens(run, *(values[name] for name in ids))
                yield LensEvent(run.id, branch, t.position, values, added)

    # --- distributions -----------------------------------------------------------------------
    def _forward_front(self, queue: deque[_Node]) -> None:
        """Distributions for the first queued nodes that will need one (tree attention)."""
        todo = [n for n in queue if n.logits is None and not self._finishes(n)][: self.batch]
        assert self.cache is not None
        slots = self.cache.get_seq_length()
        size = slots + len(todo)
        allow = torch.zeros(len(todo), size, dtype=torch.bool)
        allow[:, : self.prefix_len] = True
        for i, n in enumerate(todo):
            anc = n.parent
            while anc is not None and anc.slot >= 0:
                allow[i, anc.slot] = True
                anc = anc.parent
            allow[i, slots + i] = True
            n.slot = slots + i
        b = self.b
        mask = allow.to(b.device)[None, None]
        if b.model.config._attn_implementation != "sdpa" or self.attention:  # eager adds the mask
            mask = torch.zeros(mask.shape, dtype=b.model.dtype, device=b.device).masked_fill_(
                ~mask, torch.finfo(b.model.dtype).min
            )
        ids = torch.tensor([[n.token for n in todo]], device=b.device)
        positions = torch.tensor([[self.root_position + n.depth - 1 for n in todo]], device=b.device)
        out = b._forward(ids, self.cache, attention=self.attention, attention_mask=mask, position_ids=positions)
        hidden = None
        if self.lens_on:
            hidden = torch.stack([h[0] for h in b.block_outputs(out.hidden_states)], dim=1)  # [n, L-1, d]
        for i, n in enumerate(todo):
            n.logits = out.logits[0, i]
            if hidden is not None:
                n.hidden = hidden[i]
            if self.attention:
                n.attn = out.attention_entropy[i]

    def _forward_children(self, node: _Node, children: list[_Node]) -> None:
        """Fallback: each child that will need a distribution, one batch-1 forward over its own
        cache (the parent's forked by views where possible, else copied — the seed's way)."""
        b = self.b
        for child in children:
            if self._finishes(child):
                continue
            length = cache_length(node.cache)  # (None: a state-space model's state, copied whole)
            cache = (fork_cache(node.cache, length) if length is not None else None) or copy.deepcopy(node.cache)
            out = b._forward(torch.tensor([[child.token]], device=b.device), cache, attention=self.attention)
            child.cache = cache_of(out)
            child.logits = out.logits[0, -1]
            if self.lens_on:
                child.hidden = torch.stack([h[0, -1] for h in b.block_outputs(out.hidden_states)])
            if self.attention:
                child.attn = out.attention_entropy[-1]

    def _account(self, queue: deque[_Node]) -> None:
        """Track the bytes of caches and distributions held now (for `peak_bytes`)."""
        held = 0
        seen: set[int] = set()
        if self.cache is not None:
            held += sum(layer.nbytes for layer in self.cache.layers if isinstance(layer, _SlotLayer))
        for n in queue:
            if n.logits is not None:
                base = n.logits.untyped_storage()
                if base.data_ptr() not in seen:
                    seen.add(base.data_ptr())
                    held += base.nbytes()
            if n.cache is not None:
                held += sum(layer.keys.nbytes + layer.values.nbytes for layer in n.cache.layers)
        for t in self.lensing:  # logits kept for the lens's KL to the final layer
            base = t.logits.untyped_storage()
            if base.data_ptr() not in seen:
                seen.add(base.data_ptr())
                held += base.nbytes()
        self.peak_bytes = max(self.peak_bytes, held)
