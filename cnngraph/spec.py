"""YAML spec -> frozen `NetSpec`: safe loading with source positions, block
expansion (parameters, `repeat`, `when`), name scoping and reference resolution.

A spec is a mapping with `input`, `layers` and optional `name`, `output`,
`blocks`; see docs/spec.md. Each layer entry is `kind` or `{kind: {attrs}}`,
where the reserved attributes `name`, `from`, `when` and `repeat` work for
every kind, and a kind may be a block defined under `blocks`.

>>> net = loads("input: [1, 8, 8]\\nlayers: [{conv: {out: 4, kernel: 3}}, relu]")
>>> [(l.name, l.kind, l.inputs) for l in net.layers]
[('conv1', 'conv', ('input',)), ('relu1', 'relu', ('conv1',))]
"""

from __future__ import annotations

import ast
import itertools
import math
import operator
import os
import re
import stat
from dataclasses import dataclass, field
from types import MappingProxyType

import yaml

from .errors import LayerError, Pos, SpecError, clip, did_you_mean, escape
from .layers import REGISTRY, Layer, make
from .layers.base import MAX_ELEMENTS, MAX_SIZE

INPUT = "input"
RESERVED = ("name", "from", "when", "repeat")
SPLIT = "split"  # `split: {name: s, parts: 2}` writes slices s.0, s.1 (a construct of the spec, not a kind)
SPLIT_KEYS = ("parts", "sizes")
TOP_KEYS = ("name", "description", "input", "output", "preprocess", "blocks", "layers")
BLOCK_KEYS = ("description", "args", "layers", "output")
REPEAT_KEYS = ("count", "index")
MAX_DEPTH = 16  # nested block uses
MAX_LAYERS = 100_000  # layer entries after expansion, skipped ones and block instances included
MAX_REPEAT = 10_000
MAX_NESTING = 100  # lists and mappings inside each other in the YAML text
MAX_NODES = 1_000_000  # YAML values once aliases are expanded (a "billion laughs" stops here)
MAX_WORK = 20_000_000  # attribute values substituted over the whole expansion
MAX_DIGITS = 100  # characters of one YAML integer (Python refuses to read more than 4,300)
MAX_NUMBER = 2 ** 64  # magnitude of any number inside '${...}'
MAX_EXPR = 1_000  # characters of one '${...}'
# Attributes PyTorch has that change nothing at inference: refused like any unknown
# attribute, with a hint that says why.
TRAINING_ONLY = {
    "momentum": "it sets how fast the running statistics move during training",
    "track_running_stats": "it decides whether training updates the running statistics",
    "inplace": "it only saves memory in PyTorch",
    "requires_grad": "it only matters for training",
    "training": "cnngraph always runs in inference mode",
    "weight_decay": "it is a setting of the optimiser",
}


@dataclass(frozen=True)
class LayerSpec:
    """One expanded layer: unique name, validated layer object, resolved inputs, positions."""

    name: str
    kind: str
    layer: Layer
    inputs: tuple[str, ...]
    pos: Pos
    attr_pos: MappingProxyType = field(default_factory=lambda: MappingProxyType({}))
    # the block instances and repeats this layer comes from, outermost first: (full name, label)
    # such as ("layer2", "basic x2"), ("layer2.0", "basic"); the report groups rows by them
    groups: tuple = ()

    def where(self, attr: str | None = None) -> Pos:
        """The position of an attribute's value, else of the layer entry."""
        return self.attr_pos.get(attr, self.pos) if attr else self.pos


@dataclass(frozen=True, repr=False)
class NetSpec:
    """A whole network: input shape (no batch), expanded layers in spec order, output name.

    >>> loads("input: [3, 8, 8]\\nlayers: [relu, tanh]")
    <NetSpec 'net': input [3, 8, 8], 2 layers, output 'tanh1', from <string>>
    """

    name: str
    input_shape: tuple[int, ...]
    layers: tuple[LayerSpec, ...]
    output: str
    path: str
    input_pos: Pos
    source: str = ""  # the YAML text, kept for cache keys
    preprocess: object = None  # a `preprocess.Preprocess` when the spec has a 'preprocess:' section

    def __repr__(self) -> str:  # the dataclass's would print every layer and the whole YAML text
        n = len(self.layers)
        return (f"<NetSpec {self.name!r}: input {list(self.input_shape)}, {n:,} layer{'s' if n != 1 else ''}, "
                f"output {self.output!r}, from {self.path}>")


# ---- YAML with positions ----------------------------------------------------

class YMap(dict):
    """A mapping that remembers where it, its keys and its values are."""

    pos: Pos
    key_pos: dict
    val_pos: dict


class YList(list):
    pos: Pos
    item_pos: list


def _pos(file, node) -> Pos:
    return Pos(file, node.start_mark.line + 1, node.start_mark.column + 1)


_TAG = "tag:yaml.org,2002:"
# Plain data only: an explicit tag such as `!!python/object` (or any tag the safe
# loader would not build, or a set/omap that we would silently turn into a list)
# is refused with a position, never constructed.
_SCALAR_TAGS = {_TAG + t for t in ("null", "bool", "int", "float", "str", "timestamp", "binary")}


def _what(v) -> str:
    """A short description of a YAML value for 'expected X, got Y' messages."""
    if v is None:
        return "nothing (null)"
    if isinstance(v, dict):
        return "a mapping" if v else "an empty mapping"
    if isinstance(v, list):
        return "a list" if v else "an empty list"
    if isinstance(v, bool):
        return f"the boolean {str(v).lower()}"
    if isinstance(v, (int, float)):
        return f"the number {v}"
    if isinstance(v, str):
        return f"the string {clip(repr(v), 80)}"
    return f"a {type(v).__name__}"


def _check_tag(node, file, allowed):
    if node.tag not in allowed:
        tag = node.tag.replace(_TAG, "!!")
        raise SpecError(f"expected plain YAML data (mappings, lists, numbers, strings), got the tag '{tag}'",
                        pos=_pos(file, node),
                        hint="cnngraph never constructs objects from a spec; remove the tag")


def _convert(node, file, loader):
    if isinstance(node, yaml.MappingNode):
        _check_tag(node, file, (_TAG + "map",))
        m = YMap()
        m.pos, m.key_pos, m.val_pos = _pos(file, node), {}, {}
        merges = []
        for knode, vnode in node.value:
            if knode.tag == _TAG + "merge":  # `<<: *base`, applied after the explicit keys
                merges.append((_convert(vnode, file, loader), _pos(file, vnode)))
                continue
            key = _convert(knode, file, loader)
            if not isinstance(key, (str, int, float, bool)) or key is None:
                raise SpecError(f"expected a plain key, got {_what(key)}", pos=_pos(file, knode))
            if key in m:
                first = m.key_pos[key]
                raise SpecError(f"duplicate key '{key}' (first at line {first.line}, column {first.col})",
                                pos=_pos(file, knode))
            m[key] = _convert(vnode, file, loader)
            m.key_pos[key], m.val_pos[key] = _pos(file, knode), _pos(file, vnode)
        for value, vpos in merges:
            for src in value if isinstance(value, list) else [value]:
                if not isinstance(src, YMap):
                    raise SpecError(f"expected a mapping (or a list of mappings) after '<<', got {_what(src)}",
                                    pos=vpos)
                for k, v in src.items():
                    if k not in m:
                        m[k], m.key_pos[k], m.val_pos[k] = v, src.key_pos[k], src.val_pos[k]
        return m
    if isinstance(node, yaml.SequenceNode):
        _check_tag(node, file, (_TAG + "seq",))
        items = YList(_convert(n, file, loader) for n in node.value)
        items.pos, items.item_pos = _pos(file, node), [_pos(file, n) for n in node.value]
        return items
    _check_tag(node, file, _SCALAR_TAGS)
    if node.tag == _TAG + "int" and len(node.value) > MAX_DIGITS:
        raise SpecError(f"expected a number of at most {MAX_DIGITS} digits, got one of {len(node.value):,} "
                        f"characters (too large to be sane)", pos=_pos(file, node))
    value = loader.construct_object(node, deep=True)
    if isinstance(value, float) and math.isnan(value):  # infinity can mean something: a -inf pad before a max-pool
        raise SpecError(f"expected a number, got {node.value}", pos=_pos(file, node),
                        hint="NaN has no meaning in a network's description")
    return value


# PyYAML's token names, in words a spec author knows.
_TOKENS = {"'<stream end>'": "the end of the file", "<stream end>": "the end of the file",
           "<block end>": "the end of an indented block", "'<block end>'": "the end of an indented block",
           "'<block sequence start>'": "a new '-' item", "'<block mapping start>'": "a new 'key:'",
           "'<block entry>'": "a '-' item", "'<scalar>'": "a value", "'<flow mapping end>'": "'}'",
           "'<flow sequence end>'": "']'"}


def _yaml_message(e: yaml.MarkedYAMLError, text: str = "") -> tuple[str, str | None]:
    msg = e.problem or e.context or "invalid YAML"
    for token, words in _TOKENS.items():
        msg = msg.replace(token, words)
    ctx = None
    if e.context and e.problem and e.context_mark is not None:
        ctx = f"{e.context} that starts at line {e.context_mark.line + 1}, column {e.context_mark.column + 1}"
    mark = e.problem_mark or e.context_mark
    line = text.splitlines()[mark.line] if mark is not None and mark.line < len(text.splitlines()) else ""
    if "\\t" in msg or "'\\t'" in msg:
        hint = "indent with spaces, not tabs"
    elif "flow" in (e.context or "") and "${" in line:
        # `{out: ${c}}`: YAML reads the braces of an unquoted ${...} as its own
        hint = "inside '{...}' or '[...]' (flow style) quote a '${...}' value: out: \"${2 * c}\""
    elif "flow" in (e.context or ""):
        hint = "a '{' or '[' is not closed, or a ',' is missing"
    elif "block" in (e.context or "") or "indent" in msg:
        hint = "check the indentation: the items of one list or mapping start in the same column"
    else:
        hint = None
    if ctx:
        msg = f"{msg} ({ctx})"
    return msg, hint


_FAST = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def _check_nesting(text: str, file: str, loader) -> None:
    """Refuse deep nesting before the (recursive) composer sees it; PyYAML's parser is iterative."""
    depth = 0
    for event in yaml.parse(text, Loader=loader):
        if isinstance(event, yaml.CollectionStartEvent):
            depth += 1
            if depth > MAX_NESTING:
                raise SpecError(f"expected lists and mappings nested at most {MAX_NESTING} deep, got deeper",
                                pos=_pos(file, event), hint="a spec never needs this; is a ']' or '}' missing?")
        elif isinstance(event, yaml.CollectionEndEvent):
            depth -= 1


def _children(node):
    if isinstance(node, yaml.MappingNode):
        return [n for pair in node.value for n in pair]
    if isinstance(node, yaml.SequenceNode):
        return node.value
    return ()


def _check_expansion(root, file: str) -> None:
    """Count the values the document has once every alias is expanded, without expanding any:
    an alias is a shared node, so each node's expanded size is computed once (iteratively).
    Refuses a "billion laughs" before it takes memory, and aliases that contain themselves."""
    size: dict[int, int] = {}
    open_: set[int] = set()  # nodes on the current path: meeting one again is a cycle
    stack = [(root, False)]
    while stack:
        node, done = stack.pop()
        key = id(node)
        if done:
            open_.discard(key)
            n = 1 + sum(size[id(c)] for c in _children(node))
            size[key] = n
            if n > MAX_NODES:
                raise SpecError(f"expected at most {MAX_NODES:,} YAML values once aliases are expanded, got "
                                f"{n:,} in the value that starts here", pos=_pos(file, node),
                                hint="aliases (*name) that repeat other aliases multiply; a spec this large is a "
                                     "mistake")
            continue
        if key in size:
            continue
        if key in open_:
            raise SpecError("a YAML alias refers to a value that contains it (an endless value)",
                            pos=_pos(file, node), hint="an anchor (&name) cannot be used inside itself")
        open_.add(key)
        stack.append((node, True))
        stack.extend((c, False) for c in _children(node) if id(c) not in size)


def load_yaml(text: str, file: str = "<string>"):
    """Parse YAML safely (no object construction), keeping positions; errors as SpecError.

    Deep nesting and alias expansion are bounded before anything is built:

    >>> load_yaml("a: &x [1, *x]")
    Traceback (most recent call last):
    cnngraph.errors.SpecError: <string>:1:4: a YAML alias refers to a value that contains it (an endless value) — an anchor (&name) cannot be used inside itself
    """
    if not isinstance(text, str):
        raise TypeError(f"expected the YAML text as a str, got {type(text).__name__}")
    try:
        try:  # libyaml is ~10x faster; nesting is bounded first, so its recursion is too
            _check_nesting(text, file, _FAST)
            node = yaml.compose(text, Loader=_FAST)
        except yaml.YAMLError:  # a syntax error: again in PyYAML's words, which the hints below know
            _check_nesting(text, file, yaml.SafeLoader)
            node = yaml.compose(text, Loader=yaml.SafeLoader)
        if node is None:
            raise SpecError("expected a mapping with 'input' and 'layers', got an empty file",
                            pos=Pos(file, 1, 1))
        _check_expansion(node, file)
        return _convert(node, file, yaml.SafeLoader(""))
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        pos = Pos(file, mark.line + 1, mark.column + 1) if mark else Pos(file, 1, 1)
        msg, hint = _yaml_message(e, text)
        raise SpecError(f"YAML syntax error: {msg}", pos=pos, hint=hint) from None
    except yaml.YAMLError as e:
        raise SpecError(f"YAML error: {e}", pos=Pos(file, 1, 1)) from None


# ---- parameter substitution -------------------------------------------------

_OPS = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul,
        ast.FloorDiv: operator.floordiv, ast.Div: operator.truediv, ast.Mod: operator.mod,
        ast.USub: operator.neg, ast.UAdd: operator.pos}
_CMP = {ast.Eq: operator.eq, ast.NotEq: operator.ne, ast.Lt: operator.lt, ast.LtE: operator.le,
        ast.Gt: operator.gt, ast.GtE: operator.ge}
_FUNCS = {"min": min, "max": max}
_VAR = re.compile(r"^\$([A-Za-z_]\w*)$")
_EXPR = re.compile(r"^\$\{(.*)\}$", re.DOTALL)


def _is_num(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _eval(expr: str, args: dict, pos: Pos):
    """Evaluate `${...}`: numbers, booleans, argument names, + - * / // %, comparisons,
    `and`/`or`/`not`, `a if cond else b`, min() and max(); nothing else.

    >>> _eval("2 if i == 0 else 1", {"i": 0}, None), _eval("max(8, c // 4)", {"c": 64}, None)
    (2, 16)
    """
    shown = clip(expr, 80)

    def bad(msg, hint=None):
        return SpecError(msg, pos=pos, hint=hint)

    def checked(v):
        if isinstance(v, int) and not isinstance(v, bool) and abs(v) > MAX_NUMBER:
            raise bad(f"expected numbers of at most 2^64 in '${{{shown}}}', got one of about "
                      f"10^{int(v.bit_length() * 0.30103)} (too large to be sane)")
        if isinstance(v, float) and not math.isfinite(v):
            raise bad(f"expected finite numbers in '${{{shown}}}', got {v}")
        return v

    def number(n):
        v = ev(n)
        if not _is_num(v):
            raise bad(f"expected a number in '${{{shown}}}', got {_what(v)}")
        return v

    def ev(n):
        if isinstance(n, ast.Expression):
            return ev(n.body)
        if isinstance(n, ast.Constant) and isinstance(n.value, (int, float)):  # bool is an int too
            return checked(n.value)
        if isinstance(n, ast.Name):
            if n.id not in args or n.id == INPUT:
                raise bad(f"unknown block argument '{n.id}' in '${{{shown}}}'",
                          hint=did_you_mean(n.id, [a for a in args if a != INPUT]))
            return args[n.id]
        if isinstance(n, ast.BinOp) and type(n.op) in _OPS:
            return checked(_OPS[type(n.op)](number(n.left), number(n.right)))
        if isinstance(n, ast.UnaryOp) and type(n.op) in _OPS:
            return checked(_OPS[type(n.op)](number(n.operand)))
        if isinstance(n, ast.UnaryOp) and isinstance(n.op, ast.Not):
            return not ev(n.operand)
        if isinstance(n, ast.BoolOp):
            values = [ev(v) for v in n.values]
            return all(values) if isinstance(n.op, ast.And) else any(values)
        if isinstance(n, ast.Compare) and all(type(o) in _CMP for o in n.ops):
            left, ok = ev(n.left), True
            for op, right_node in zip(n.ops, n.comparators):
                right = ev(right_node)
                ok = ok and _CMP[type(op)](left, right)
                left = right
            return ok
        if isinstance(n, ast.IfExp):
            return ev(n.body) if ev(n.test) else ev(n.orelse)
        if (isinstance(n, ast.Call) and isinstance(n.func, ast.Name) and n.func.id in _FUNCS and n.args
                and not n.keywords):
            return _FUNCS[n.func.id](number(a) for a in n.args)
        raise bad(f"expected arithmetic on numbers and block arguments, got '${{{shown}}}'",
                  hint="+ - * / // %, comparisons, and/or/not, 'a if cond else b', min(), max()")

    if len(expr) > MAX_EXPR:
        raise bad(f"expected an expression of at most {MAX_EXPR} characters in '${{...}}', got {len(expr):,}")
    try:
        value = ev(ast.parse(expr.strip(), mode="eval"))
    except SyntaxError:
        raise bad(f"expected an arithmetic expression, got '${{{shown}}}'") from None
    except (ZeroDivisionError, TypeError) as e:
        raise bad(f"cannot evaluate '${{{shown}}}': {e}") from None
    except (RecursionError, MemoryError, ValueError):
        raise bad(f"cannot evaluate '${{{shown}}}': too complex") from None
    if isinstance(value, float) and value.is_integer() and "/" in expr and "//" not in expr:
        value = int(value)
    elif isinstance(value, float) and "/" in expr:
        value = _Quotient(value)
    return value


class _Quotient(float):
    """A fractional result of `/` in `${...}`, so a size error can suggest `//`."""


def _subst(value, args: dict, pos: Pos):
    """Replace `$name` and `${expr}` (whole values, also inside lists) by argument values."""
    if isinstance(value, str):
        m = _VAR.match(value)
        if m:
            if m.group(1) not in args:
                if m.group(1) == INPUT:
                    hint = "'$input' exists only inside a block; at the top level write 'from: input'"
                elif args:
                    hint = did_you_mean(m.group(1), args)
                else:
                    hint = "'$name' refers to an argument of the enclosing block; here there is none"
                raise SpecError(f"unknown block argument '${m.group(1)}'", pos=pos, hint=hint)
            return args[m.group(1)]
        m = _EXPR.match(value)
        if m:
            return _eval(m.group(1), args, pos)
        if "$" in value:
            raise SpecError(f"expected '$name' or '${{expression}}' as a whole value, got {clip(repr(value), 80)}",
                            pos=pos, hint="substitution replaces whole values only, never part of a string "
                                          "(repeated layers are named <name>.0, <name>.1, ... by themselves)")
        return value
    if isinstance(value, list):
        items = getattr(value, "item_pos", [pos] * len(value))
        return [_subst(v, args, p) for v, p in zip(value, items)]
    return value


# ---- expansion ----------------------------------------------------------------

@dataclass
class _Scope:
    """One block instance (or the top level): name prefix, its local names, its arguments."""

    prefix: str
    locals: set
    args: dict
    parent: _Scope | None
    input: str  # the name this scope's first layer reads from
    counters: dict = field(default_factory=dict)

    def full(self, local: str) -> str:
        return f"{self.prefix}.{local}" if self.prefix else local

    def resolve(self, ref: str) -> str:
        scope = self
        head, _, tail = ref.rpartition(".")
        while scope is not None:
            if ref in scope.locals:
                return scope.full(ref)
            if head in scope.locals and tail.isdigit():  # one part of a local split (or repeat): s.0
                return f"{scope.full(head)}.{tail}"
            scope = scope.parent
        return ref


class _AttrPos(dict):
    """Attribute name -> position of its value; `key_pos` has the positions of the names."""

    key_pos: dict


@dataclass
class _Raw:
    """A layer before reference checking."""

    name: str
    kind: str
    layer: Layer
    refs: list  # [(resolved name, Pos)]
    pos: Pos
    attr_pos: dict
    groups: tuple = ()


def _size(value) -> int:
    """Scalars in a YAML value (the work substitution and validation do on it)."""
    if isinstance(value, dict):
        return 1 + sum(_size(v) for v in value.values())
    if isinstance(value, list):
        return 1 + sum(_size(v) for v in value)
    return 1


class _Expander:
    def __init__(self, file: str, blocks: dict):
        self.file = file
        self.blocks = blocks
        self.out: list[_Raw] = []
        self.names: dict[str, Pos] = {INPUT: None}
        self.alias: dict[str, tuple[str, Pos]] = {}  # skipped layer -> its input
        self.parts: dict[str, tuple[str, ...]] = {}  # a split -> the names of its slices
        self.stack: list[str] = []  # blocks being expanded, to name a recursion
        self.groups: list[tuple[str, str]] = []  # enclosing block instances and repeats: (name, label)
        self.work = 0  # attribute values substituted so far
        self.sizes: dict[int, int] = {}  # id(attrs) -> _size, computed once per entry in the text

    def err(self, msg, pos, layer=None, op=None, hint=None):
        return SpecError(msg, pos=pos, layer=layer, op=op, hint=hint)

    def charge(self, attrs, pos):
        """Bound the total work of expansion: repeats of blocks of repeats multiply."""
        n = self.sizes.get(id(attrs))
        if n is None:
            n = self.sizes[id(attrs)] = _size(attrs)
        self.work += n
        if self.work > MAX_WORK:
            raise self.err(f"expected at most {MAX_WORK:,} attribute values once blocks and repeats are expanded, "
                           f"got more (too large to be sane)", pos)

    def entries(self, items, scope: _Scope, depth: int) -> str:
        """Expand a list of layer entries in `scope`; returns the name of the last one."""
        if not isinstance(items, list):
            raise self.err(f"expected a list of layers, got {_what(items)}", getattr(items, "pos", None))
        if not items:
            raise self.err("expected at least one layer, got an empty list", getattr(items, "pos", None))
        prev = scope.input
        for item, pos in zip(items, items.item_pos):
            prev = self.entry(item, pos, scope, prev, depth)
        return prev

    def split(self, item, pos):
        """An entry -> (kind, attrs YMap, kind position)."""
        if isinstance(item, str):
            empty = YMap()
            empty.pos, empty.key_pos, empty.val_pos = pos, {}, {}
            return item, empty, pos
        if isinstance(item, YMap) and len(item) == 1:
            kind, attrs = next(iter(item.items()))
            if attrs is None:
                attrs = YMap()
                attrs.pos, attrs.key_pos, attrs.val_pos = item.val_pos[kind], {}, {}
            if not isinstance(attrs, YMap):
                raise self.err(f"expected a mapping of attributes after '{kind}:', got {_what(attrs)}",
                               item.val_pos[kind], hint=f"write '{kind}: {{...}}'")
            return str(kind), attrs, item.key_pos[kind]
        if isinstance(item, YMap) and item:
            raise self.err(f"expected one layer kind per entry, got keys {', '.join(map(str, item))}", pos,
                           hint="put attributes inside the kind: '- conv: {out: 8, kernel: 3}'")
        raise self.err(f"expected a layer entry ('relu' or '{{conv: {{...}}}}'), got {_what(item)}", pos)

    def sub(self, attrs, keys, args, kind, who):
        """Substitute `$...` in the given attributes; an error names the layer it belongs to."""
        try:
            return {k: _subst(attrs[k], args, attrs.val_pos[k]) for k in keys}
        except SpecError as e:
            raise self.err(e.msg, e.pos, layer=who, op=kind, hint=e.hint) from None

    def entry(self, item, pos, scope: _Scope, prev: str, depth: int) -> str:
        kind, attrs, kpos = self.split(item, pos)
        self.charge(attrs, kpos)
        vpos = _AttrPos({k: attrs.val_pos[k] for k in attrs})
        vpos.key_pos = dict(attrs.key_pos)
        raw = attrs.get("name")
        guess = scope.full(str(raw) if isinstance(raw, (str, int)) and "$" not in str(raw)
                           else f"{kind}{scope.counters.get(kind, 0) + 1}")
        name = self.sub(attrs, [k for k in ("name",) if k in attrs], scope.args, kind, guess).get("name")
        if name is not None and not isinstance(name, (str, int)):
            raise self.err(f"expected a string name, got {_what(name)}", vpos["name"], op=kind,
                           hint="quote names that look like numbers: name: \"0.1\"")
        if kind not in REGISTRY and kind not in self.blocks and kind != SPLIT:
            raise self.err(f"unknown layer kind '{kind}'", kpos, layer=name,
                           hint=did_you_mean(kind, list(REGISTRY) + list(self.blocks) + [SPLIT]))
        if name is not None and str(name) == INPUT:
            raise self.err("expected a layer name other than 'input', got 'input'", vpos["name"],
                           layer=scope.full(INPUT), op=kind,
                           hint="'input' names the network input ('$input' a block's); choose another name")
        local = str(name) if name is not None else self.auto_name(kind, scope)
        full = scope.full(local)
        count, index = self.repeat(attrs, vpos, scope, kind, full)
        rest = [k for k in attrs if k not in ("name", "repeat")]
        if count == 1 and index is None:
            return self.instance(kind, self.sub(attrs, rest, scope.args, kind, full), vpos, kpos, full, scope,
                                 prev, depth)
        self.define(full, kpos, kind)
        a = None if index is not None else self.sub(attrs, rest, scope.args, kind, full)
        self.groups.append((full, f"{kind} x{count}"))
        last = prev
        for i in range(count):
            if i:
                self.charge(attrs, kpos)
            ai = dict(a) if a is not None else self.sub(attrs, rest, {**scope.args, index: i}, kind, f"{full}.{i}")
            last = self.instance(kind, ai, vpos, kpos, f"{full}.{i}", scope, prev, depth,
                                 chained=None if i == 0 else [(last, kpos)])
        self.groups.pop()
        self.alias[full] = (last, kpos)
        return full

    def repeat(self, attrs, vpos, scope, kind, full) -> tuple[int, str | None]:
        """`repeat: n` or `repeat: {count: n, index: i}` -> (n, index variable or None)."""
        if "repeat" not in attrs:
            return 1, None
        value = attrs["repeat"]
        index, pos = None, vpos["repeat"]
        if isinstance(value, YMap):
            for k in value:
                if k not in REPEAT_KEYS:
                    raise self.err(f"unknown key '{k}' in 'repeat' (expected count, index)", value.key_pos[k],
                                   layer=full, op=kind, hint=did_you_mean(k, REPEAT_KEYS))
            if "count" not in value:
                raise self.err("missing 'count' in 'repeat'", pos, layer=full, op=kind,
                               hint="write 'repeat: {count: 3, index: i}'")
            index = value.get("index")
            if index is not None and (not isinstance(index, str) or not re.match(r"^[A-Za-z_]\w*$", index)):
                raise self.err(f"expected the 'index' of 'repeat' to be a name like 'i', got {_what(index)}",
                               value.val_pos["index"], layer=full, op=kind)
            if index in scope.args or index in RESERVED:
                raise self.err(f"the index '{index}' of 'repeat' hides the block argument of that name",
                               value.val_pos["index"], layer=full, op=kind, hint="choose another name")
            value, pos = value["count"], value.val_pos["count"]
        try:
            count = _subst(value, scope.args, pos)
        except SpecError as e:
            raise self.err(e.msg, e.pos, layer=full, op=kind, hint=e.hint) from None
        if isinstance(count, bool) or not isinstance(count, int) or not 1 <= count <= MAX_REPEAT:
            raise self.err(f"expected 'repeat' to be an integer from 1 to {MAX_REPEAT}, got {_what(count)}", pos,
                           layer=full, op=kind, hint="or 'repeat: {count: n, index: i}' to use the index i")
        return count, index

    def instance(self, kind, a, vpos, kpos, full, scope, prev, depth, chained=None) -> str:
        """One layer (or block instance) with substituted attributes `a`."""
        when = a.pop("when", True)
        if not isinstance(when, bool):
            raise self.err(f"expected true or false for 'when', got {_what(when)}", vpos["when"], layer=full,
                           op=kind)
        refs = self.refs(a.pop("from", None), vpos.get("from", kpos), scope, prev, full)
        if chained is not None:  # a later repetition reads the one before it
            refs = chained
        if not when:
            merge = kind in REGISTRY and REGISTRY[kind].n_inputs is None
            if len(refs) != 1 and not (merge and refs):
                raise self.err(f"expected exactly one input for a layer skipped with 'when: false', got {len(refs)}",
                               vpos.get("when", kpos), layer=full, op=kind,
                               hint="a skipped layer passes its input through, so it needs exactly one "
                                    "(a skipped merge such as add passes its first input)")
            self.define(full, kpos, kind)
            self.alias[full] = refs[0]
            return full
        return self.one(kind, a, vpos, kpos, full, refs, scope, depth)

    def one(self, kind, a, vpos, kpos, full, refs, scope, depth) -> str:
        if kind in self.blocks:
            return self.use_block(kind, a, vpos, kpos, full, refs, scope, depth)
        if kind == SPLIT:
            return self.split_entry(a, vpos, kpos, full, refs)
        self.define(full, kpos, kind)
        try:
            layer = make(kind, a)
        except LayerError as e:
            hint = e.hint
            if hint is None and isinstance(a.get(e.attr), _Quotient):
                hint = "use '//' for integer division in '${...}'"
            at = vpos.get(e.attr, kpos)
            if e.attr in a and e.attr not in {x.name for x in REGISTRY[kind].attrs}:
                at = vpos.key_pos.get(e.attr, at)  # an unknown attribute: point at its name
                if e.attr in TRAINING_ONLY:
                    hint = f"'{e.attr}' only matters in training ({TRAINING_ONLY[e.attr]}); cnngraph runs " \
                           f"inference, so remove it"
            raise self.err(e.msg, at, layer=full, op=kind, hint=hint) from None
        if layer.n_inputs == 1 and len(refs) != 1:
            raise self.err(f"expected 1 input, got {len(refs)}", vpos.get("from", kpos), layer=full, op=kind)
        if layer.n_inputs is None and len(refs) < 2:
            raise self.err(f"expected 2 or more inputs in 'from', got {len(refs)}", vpos.get("from", kpos),
                           layer=full, op=kind, hint=f"write '{kind}: {{from: [a, b]}}'")
        if layer.n_inputs not in (None, 1) and len(refs) != layer.n_inputs:
            raise self.err(f"expected {layer.n_inputs} inputs in 'from', got {len(refs)}", vpos.get("from", kpos),
                           layer=full, op=kind, hint=f"write '{kind}: {{from: [a, b]}}'")
        self.out.append(_Raw(full, kind, layer, refs, kpos, vpos, tuple(self.groups)))
        return full

    def split_entry(self, a, vpos, kpos, full, refs) -> str:
        """`split: {parts: n}` or `split: {sizes: [a, b, ...]}`: one slice layer per part, named
        <name>.0, <name>.1, ...; the split's own name is no value (reading it asks which part)."""
        for k in a:
            if k not in SPLIT_KEYS:
                raise self.err(f"unknown attribute '{k}' (expected {', '.join(SPLIT_KEYS)})", vpos.key_pos.get(k, kpos),
                               layer=full, op=SPLIT, hint=did_you_mean(k, SPLIT_KEYS))
        if ("parts" in a) == ("sizes" in a):
            raise self.err("expected either 'parts' (equal parts) or 'sizes' (channels per part)", kpos, layer=full,
                           op=SPLIT, hint="e.g. 'split: {parts: 2}' or 'split: {sizes: [16, 48]}'")
        if len(refs) != 1:
            raise self.err(f"expected 1 input, got {len(refs)}", vpos.get("from", kpos), layer=full, op=SPLIT)
        if "parts" in a:
            n = a["parts"]
            if isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= MAX_REPEAT:
                raise self.err(f"attribute 'parts': expected an integer from 1 to {MAX_REPEAT}, got {_what(n)}",
                               vpos["parts"], layer=full, op=SPLIT)
            parts = [{"part": i, "parts": n} for i in range(n)]
        else:
            sizes = a["sizes"]
            if not isinstance(sizes, list) or not sizes or not 1 <= len(sizes) <= MAX_REPEAT or any(
                    isinstance(v, bool) or not isinstance(v, int) or v < 1 for v in sizes):
                shown = clip(str(sizes), 80) if isinstance(sizes, list) else _what(sizes)
                raise self.err(f"attribute 'sizes': expected a list of positive channel counts, got {shown}",
                               vpos["sizes"], layer=full, op=SPLIT)
            starts = [sum(sizes[:i]) for i in range(len(sizes) + 1)]
            parts = [{"start": lo, "end": hi} for lo, hi in itertools.pairwise(starts)]
        self.define(full, kpos, SPLIT)
        names = []
        self.groups.append((full, f"{SPLIT} x{len(parts)}"))
        for i, attrs in enumerate(parts):
            name = f"{full}.{i}"
            self.define(name, kpos, "slice")
            self.out.append(_Raw(name, "slice", make("slice", attrs), refs, kpos, vpos, tuple(self.groups)))
            names.append(name)
        self.groups.pop()
        self.parts[full] = tuple(names)
        return full

    def use_block(self, kind, a, vpos, kpos, full, refs, scope, depth) -> str:
        chain = self.stack + [kind]
        if kind in self.stack:
            raise self.err(f"block '{kind}' uses itself ({' -> '.join(chain)})", kpos, layer=full, op=kind,
                           hint="a block may use other blocks, never itself")
        if depth >= MAX_DEPTH:
            raise self.err(f"blocks nested deeper than {MAX_DEPTH} (does block '{kind}' use itself?)", kpos,
                           layer=full)
        block = self.blocks[kind]
        params = block.get("args") or {}
        for k in a:
            if k not in params:
                raise self.err(f"unknown argument '{k}' for block '{kind}' (expected "
                               f"{', '.join(map(str, params)) or 'none'})", vpos.key_pos.get(k, vpos[k]),
                               layer=full,
                               hint=did_you_mean(k, params))
        args = {k: a[k] for k in params if k in a}
        for k, default in params.items():  # defaults may use the arguments before them: "${out // 4}"
            if k in a:
                continue
            if default is None:
                raise self.err(f"missing required argument '{k}' for block '{kind}'", kpos, layer=full,
                               hint=f"write '{kind}: {{{k}: ...}}' (arguments with ~ have no default)")
            try:
                args[k] = _subst(default, args, params.val_pos[k])
            except SpecError as e:
                hint = e.hint if "unknown block argument" not in e.msg else \
                    "a default can use the arguments declared before it"
                raise self.err(f"in the default of argument '{k}': {e.msg}", e.pos, layer=full, op=kind,
                               hint=hint) from None
        if len(refs) != 1:
            raise self.err(f"a block takes 1 input, got {len(refs)}", vpos.get("from", kpos), layer=full)
        self.define(full, kpos, kind)
        args[INPUT] = f"{full}.{INPUT}"  # `$input`: whatever feeds this block instance
        inner = _Scope(full, _local_names(block["layers"]), args, scope, input=args[INPUT])
        self.alias[f"{full}.{INPUT}"] = refs[0]
        self.stack.append(kind)
        self.groups.append((full, kind))
        last = self.entries(block["layers"], inner, depth + 1)
        self.groups.pop()
        self.stack.pop()
        out = block.get("output")
        if out is not None and inner.full(str(out)) not in self.names:
            mine = [n[len(full) + 1:] for n in self.names if n and n.startswith(full + ".")]
            raise self.err(f"unknown layer '{out}' in the 'output' of block '{kind}'", block.val_pos["output"],
                           layer=full, op=kind, hint=did_you_mean(str(out), mine))
        self.alias[full] = ((inner.full(str(out)) if out is not None else last), kpos)
        return full

    def auto_name(self, kind, scope) -> str:
        n = scope.counters.get(kind, 0) + 1
        scope.counters[kind] = n
        return f"{kind}{n}"

    def define(self, full, pos, kind):
        # every entry counts, also those skipped with `when: false` and block instances
        if len(self.names) > MAX_LAYERS:
            raise self.err(f"expected at most {MAX_LAYERS:,} layers once blocks and repeats are expanded "
                           f"(skipped ones included), got more (too large to be sane)", pos)
        if full in self.names:
            first = self.names[full]
            where = "the network input" if first is None else f"line {first.line}"
            raise self.err(f"duplicate layer name (already used at {where})", pos, layer=full, op=kind)
        self.names[full] = pos

    def refs(self, value, pos, scope, prev, who) -> list:
        if value is None:
            return [(prev, pos)]
        values = value if isinstance(value, list) else [value]
        items = getattr(value, "item_pos", None) or [pos] * len(values)
        out = []
        for v, p in zip(values, items):
            if not isinstance(v, (str, int)):
                raise self.err(f"expected a layer name in 'from', got {_what(v)}", p, layer=who)
            out.append((scope.resolve(str(v)), p))
        return out

    def final(self, ref: str, pos: Pos, who: str, op: str, key: str = "from") -> str:
        """Follow aliases (skipped layers, block outputs) to a real layer name."""
        seen = set()
        while ref in self.alias:
            if ref in seen:
                raise self.err(f"cyclic reference through '{ref}'", pos, layer=who, op=op)
            seen.add(ref)
            ref, pos = self.alias[ref]
        if ref not in self.names:
            raise self.err(f"unknown layer '{ref}' in '{key}'", pos, layer=who, op=op,
                           hint=did_you_mean(ref, [n for n in self.names if n not in self.alias]))
        if ref in self.parts:
            parts = self.parts[ref]
            raise self.err(f"'{ref}' is a split into {len(parts)} parts, not one value: read one of "
                           f"{', '.join(parts)}", pos, layer=who, op=op, hint=f"write '{key}: {parts[0]}'")
        return ref


def _local_names(items) -> set:
    names = set()
    for item in items if isinstance(items, list) else []:
        if isinstance(item, YMap) and len(item) == 1:
            attrs = next(iter(item.values()))
            if isinstance(attrs, YMap) and isinstance(attrs.get("name"), (str, int)):
                names.add(str(attrs["name"]))
    return names


def _input_shape(doc, file) -> tuple[int, ...]:
    if "input" not in doc:
        raise SpecError("missing 'input' (the input shape without batch, e.g. [3, 224, 224])", pos=doc.pos)
    shape, pos = doc["input"], doc.val_pos["input"]
    if isinstance(shape, YMap) and "shape" in shape:
        for k in shape:
            if k != "shape":
                raise SpecError(f"unknown key '{k}' in 'input' (expected shape)", pos=shape.key_pos[k])
        shape, pos = shape["shape"], shape.val_pos["shape"]
    if not isinstance(shape, list) or not 1 <= len(shape) <= 4:
        got = f"{len(shape)} sizes" if isinstance(shape, list) and shape else _what(shape)
        raise SpecError(f"expected 'input' as [channels, *spatial] with 0 to 3 spatial dims, got {got}",
                        pos=pos, hint="e.g. [3, 224, 224] for an RGB image, [1, 16000] for audio, "
                                      "[3, 16, 112, 112] for a clip; no batch dim")
    for v, vpos in zip(shape, getattr(shape, "item_pos", [pos] * len(shape))):
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise SpecError(f"expected positive integer sizes in 'input', got {_what(v)}", pos=vpos)
        if v > MAX_SIZE:
            raise SpecError(f"expected input sizes of at most {MAX_SIZE}, got {v} (too large to be sane)", pos=vpos)
    if math.prod(shape) > MAX_ELEMENTS:
        raise SpecError(f"expected at most {MAX_ELEMENTS} input elements per sample, got {math.prod(shape)} "
                        f"(too large to be sane)", pos=pos)
    return tuple(shape)


def _blocks(doc, file) -> dict:
    if doc.get("blocks") is None:
        return {}
    blocks = doc["blocks"]
    if not isinstance(blocks, YMap):
        raise SpecError(f"expected 'blocks' to be a mapping of block definitions, got {_what(blocks)}",
                        pos=doc.val_pos["blocks"])
    for bname, body in blocks.items():
        bpos = blocks.val_pos[bname]
        if not isinstance(bname, str) or not re.match(r"^[A-Za-z_][\w.-]*$", bname):
            raise SpecError(f"expected block names like 'basic' or 'conv_bn', got {clip(repr(bname), 80)}",
                            pos=blocks.key_pos[bname], hint="letters, digits, '_', '.' and '-', not starting "
                                                            "with a digit")
        if bname in REGISTRY or bname == SPLIT:
            raise SpecError(f"block name '{bname}' shadows the built-in layer kind", pos=blocks.key_pos[bname],
                            hint="rename the block")
        if not isinstance(body, YMap) or "layers" not in body:
            raise SpecError(f"expected block '{bname}' to be a mapping with 'layers' (and optional 'args'), "
                            f"got {_what(body)}", pos=bpos)
        for k in body:
            if k not in BLOCK_KEYS:
                raise SpecError(f"unknown key '{k}' in block '{bname}' (expected {', '.join(BLOCK_KEYS)})",
                                pos=body.key_pos[k], hint=did_you_mean(k, BLOCK_KEYS))
        args = body.get("args")
        if args is not None and not isinstance(args, YMap):
            raise SpecError(f"expected 'args' of block '{bname}' to map names to defaults (~ = required), "
                            f"got {_what(args)}", pos=body.val_pos["args"], hint="e.g. args: {out: ~, stride: 1}")
        for k in args or {}:
            if k in RESERVED or k == INPUT:
                raise SpecError(f"block argument '{k}' of block '{bname}' is reserved", pos=args.key_pos[k],
                                hint=f"{', '.join(RESERVED + (INPUT,))} have a meaning of their own; rename it")
            if not isinstance(k, str) or not re.match(r"^[A-Za-z_]\w*$", k):
                raise SpecError(f"expected block argument names like 'out' or 'stride', got {k!r}",
                                pos=args.key_pos[k], hint="letters, digits and '_', not starting with a digit")
    return blocks


def loads(text: str, file: str = "<string>") -> NetSpec:
    """Parse a spec from YAML text.

    >>> loads("input: [4]\\nlayers: [{linear: {out: 2}}]").layers[0].layer.out
    2
    """
    doc = load_yaml(text, file)
    if not isinstance(doc, YMap):
        raise SpecError(f"expected a mapping with 'input' and 'layers', got {_what(doc)}",
                        pos=getattr(doc, "pos", Pos(file, 1, 1)))
    for k in doc:
        if k not in TOP_KEYS:
            raise SpecError(f"unknown top-level key '{k}' (expected {', '.join(TOP_KEYS)})",
                            pos=doc.key_pos[k], hint=did_you_mean(k, TOP_KEYS))
    for key in ("name", "output"):
        v = doc.get(key)
        if v is not None and (isinstance(v, bool) or not isinstance(v, (str, int))):
            raise SpecError(f"expected '{key}' to be a {'name' if key == 'name' else 'layer name'}, got {_what(v)}",
                            pos=doc.val_pos[key])
    if doc.get("description") is not None and not isinstance(doc["description"], str):
        raise SpecError(f"expected 'description' to be text, got {_what(doc['description'])}",
                        pos=doc.val_pos["description"])
    shape = _input_shape(doc, file)
    pre = None
    if doc.get("preprocess") is not None:
        from .preprocess import parse_section
        pre = parse_section(doc["preprocess"], doc.val_pos["preprocess"], shape)
    if "layers" not in doc:
        raise SpecError("missing 'layers' (the list of layers)", pos=doc.pos)
    ex = _Expander(file, _blocks(doc, file))
    top = _Scope("", set(), {}, None, input=INPUT)
    items = doc["layers"]
    if not isinstance(items, YList):
        raise SpecError(f"expected 'layers' to be a list, got {_what(items)}", pos=doc.val_pos["layers"],
                        hint="write one '- kind' or '- kind: {...}' per line")
    last = ex.entries(items, top, 0)
    out_pos = doc.val_pos.get("output", doc.pos)
    output = ex.final(str(doc.get("output", last)), out_pos, None, None, key="output")
    layers = tuple(
        LayerSpec(r.name, r.kind, r.layer, tuple(ex.final(ref, p, r.name, r.kind) for ref, p in r.refs),
                  r.pos, MappingProxyType(r.attr_pos), r.groups)
        for r in ex.out)
    name = doc.get("name") or ("net" if file.startswith("<") else os.path.splitext(os.path.basename(file))[0])
    return NetSpec(str(name), shape, layers, output, file, doc.val_pos.get("input", doc.pos), text, pre)


MAX_FILE = 64 << 20  # bytes of a spec file


def bundled() -> dict[str, str]:
    """The specs that come with cnngraph, by name -> path (`cnngraph specs` lists them).

    >>> sorted(bundled())[:3]
    ['alexnet', 'audio1d', 'convnext_tiny']
    """
    folder = os.path.join(os.path.dirname(os.path.abspath(__file__)), "specs")
    try:
        files = sorted(os.listdir(folder))
    except OSError:
        return {}
    return {f[:-5]: os.path.join(folder, f) for f in files if f.endswith(".yaml")}


def find(path: str | os.PathLike) -> str:
    """A spec's file: `path` itself when it exists, else a bundled spec of that name
    (`resnet50` or `resnet50.yaml`, without a folder); else a SpecError that says what there is.

    >>> os.path.basename(find("lenet5"))
    'lenet5.yaml'
    """
    path = os.fspath(path)
    if os.path.exists(path) or os.path.dirname(path):
        return path
    name = path.removesuffix(".yaml")
    specs = bundled()
    if name in specs:
        return specs[name]
    hint = did_you_mean(name, specs)
    hint = f"{hint[:-1]} (a bundled spec)?" if hint else "'cnngraph specs' lists the bundled specs"
    raise SpecError(f"no such file: {path}", hint=hint)


def load(path: str | os.PathLike) -> NetSpec:
    """Read and parse a spec file, or a bundled spec by name; a missing or unreadable
    file is a SpecError too.

    >>> load("resnet18").name
    'resnet18'
    """
    path = find(path)
    try:
        st = os.stat(path)
        if not stat.S_ISREG(st.st_mode):  # a FIFO or a device would block or never end
            raise SpecError(f"cannot read {escape(path)}: not a regular file")
        if st.st_size > MAX_FILE:
            raise SpecError(f"cannot read {escape(path)}: {st.st_size:,} bytes, expected a spec of at most "
                            f"{MAX_FILE:,} bytes")
        with open(path, encoding="utf-8") as f:
            text = f.read(MAX_FILE + 1)
    except FileNotFoundError:
        raise SpecError(f"no such file: {path}") from None
    except (OSError, UnicodeDecodeError) as e:
        raise SpecError(f"cannot read {path}: {e}") from None
    return loads(text, path)


# ---- spec-level warnings (graph.build adds them to the graph's warnings) -----------

def batch_like(spec: NetSpec) -> SpecError | None:
    """A warning when the input's first size looks like PyTorch's batch: `[1, 3, 32, 32]` is
    read as a 3D net on 1-channel volumes, which is rarely what its author meant.

    >>> print(batch_like(loads("input: [1, 3, 32, 32]\\nlayers: [relu]")))
    <string>:1:8: input [1, 3, 32, 32] looks like it includes a batch size of 1 (PyTorch's N, C, ...): cnngraph reads it as 1 channel of 3x32x32 — without a batch dim, write input: [3, 32, 32]
    """
    s = spec.input_shape
    if len(s) >= 3 and s[0] == 1 and s[1] in (1, 2, 3, 4) and min(s[2:]) >= 8:
        return SpecError(f"input {list(s)} looks like it includes a batch size of 1 (PyTorch's N, C, ...): "
                         f"cnngraph reads it as 1 channel of {'x'.join(map(str, s[1:]))}",
                         pos=spec.input_pos, hint=f"without a batch dim, write input: {list(s[1:])}")
    return None


def unread(spec: NetSpec) -> list[tuple[LayerSpec, int]]:
    """Layers whose output reaches neither another layer nor the network output, each with
    the number of layers that only feed it (they do not affect the output either).

    >>> [(ls.name, n) for ls, n in unread(loads("input: [4]\\noutput: a\\nlayers: [{relu: {name: a}}, tanh, sigmoid]"))]
    [('sigmoid1', 1)]
    """
    live, todo = set(), [spec.output]
    by_name = {ls.name: ls for ls in spec.layers}
    while todo:
        name = todo.pop()
        if name in live or name not in by_name:
            continue
        live.add(name)
        todo.extend(by_name[name].inputs)
    read = {i for ls in spec.layers for i in ls.inputs}
    dead = [ls for ls in spec.layers if ls.name not in live]
    out = []
    for ls in dead:
        if ls.name in read:  # feeds another dead layer: counted with that one
            continue
        feeding, todo = set(), list(ls.inputs)
        while todo:
            name = todo.pop()
            if name in by_name and name not in live and name not in feeding:
                feeding.add(name)
                todo.extend(by_name[name].inputs)
        out.append((ls, len(feeding)))
    return out


def unread_warning(ls: LayerSpec, feeding: int, output: str, op: str | None = None) -> SpecError:
    """The warning for one of `unread(spec)`."""
    more = f" (nor do the {feeding} layer(s) that only feed it)" if feeding else ""
    return SpecError(f"nothing reads this layer's output and it is not the network output '{output}': it does "
                     f"not affect the result{more}", pos=ls.pos, layer=ls.name, op=op or ls.kind,
                     hint="remove it, or name it in 'output'")
