"""Load, merge and validate the interchange YAML (docs/model.md, "JSON").

Every problem becomes one :class:`ConfigIssue` naming the file, line, field path and value; all
problems of all files are collected before :class:`ConfigError` is raised, so an operator fixes them
in one pass. Besides the three sections, a file may hold `include: [paths]` (relative to that file,
or `harpagon:PATH` for a file shipped in the package, e.g. `harpagon:models/profiles/catalog.yaml`)
so that an application file can name the profile catalog it is meant for.

Loading is bounded, since a config may come from someone else: only regular files are read (a FIFO
or a device would block or never end), each of at most :data:`MAX_FILE_BYTES`, at most
:data:`MAX_FILES` of them, and a document may expand to at most :data:`MAX_NODES` nodes, aliases
counted at each use (a "billion laughs" document of a few hundred bytes expands to 10^9), nested at
most :data:`MAX_DEPTH` deep.
"""

from __future__ import annotations

import os
import stat
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from harpagon.config import pipeline
from harpagon.config.schema import App, Hardware, Profile, ServeConfig, Workload
from harpagon.data import PACKAGED, packaged

SECTIONS = ("hardware", "profiles", "apps")

#: The largest file read: 50 times the shipped profile catalog (the pure-Python parser takes ~5 s a MiB).
MAX_FILE_BYTES = 1 << 20
#: The most files one load reads, includes counted.
MAX_FILES = 256
#: The most nodes one document may stand for, an alias counted as the nodes it repeats.
MAX_NODES = 250_000
#: The deepest nesting of a document (the shipped configs nest 6 deep; the parser recurses).
MAX_DEPTH = 64
_SECTION_TYPES: dict[str, type] = {"hardware": Hardware, "profiles": Profile, "apps": App}


@dataclass(frozen=True)
class ConfigIssue:
    """One input error, printable on one line."""

    file: str
    line: int | None
    field: str
    message: str

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line else self.file
        return f"{where}: {self.field}: {self.message}" if self.field else f"{where}: {self.message}"


class ConfigError(Exception):
    """Invalid input; `issues` holds every problem found."""

    def __init__(self, issues: list[ConfigIssue]):
        super().__init__("\n".join(str(i) for i in issues))
        self.issues = issues


# --- YAML with line numbers -------------------------------------------------------------------


class _Map(dict):
    line: int
    key_lines: dict[Any, int]


class _Seq(list):
    line: int
    item_lines: list[int]


class _Refused(yaml.YAMLError):
    """A document past a bound of :data:`MAX_NODES` or :data:`MAX_DEPTH`, at `mark`."""

    def __init__(self, problem: str, mark: yaml.Mark):
        super().__init__(problem)
        self.problem, self.problem_mark = problem, mark


class _LineLoader(yaml.SafeLoader):
    """SafeLoader that remembers the line of every mapping key and sequence item, and refuses a
    document that expands past :data:`MAX_NODES` nodes or nests past :data:`MAX_DEPTH`, while
    composing it: before anything is built from the repeated nodes."""

    def __init__(self, stream: str):
        super().__init__(stream)
        self._size: dict[yaml.Node, int] = {}  # nodes a composed node stands for, its own included
        self._expanded = 0
        self._depth = 0

    def compose_node(self, parent: yaml.Node | None, index: Any) -> yaml.Node:
        event = self.peek_event()
        if isinstance(event, yaml.AliasEvent):
            target = self.anchors.get(event.anchor)
            if target is not None and target not in self._size:  # still being composed
                raise _Refused(f"alias *{event.anchor} refers to a node that contains it", event.start_mark)
            node = super().compose_node(parent, index)
            self._count(self._size[node], event.start_mark)
            return node
        if self._depth >= MAX_DEPTH:
            raise _Refused(f"nested deeper than {MAX_DEPTH} levels", event.start_mark)
        self._depth += 1
        try:
            node = super().compose_node(parent, index)
        finally:
            self._depth -= 1
        if isinstance(node, yaml.SequenceNode):
            children = node.value
        elif isinstance(node, yaml.MappingNode):
            children = [n for pair in node.value for n in pair]
        else:
            children = []
        self._size[node] = 1 + sum(self._size[c] for c in children)
        self._count(1, event.start_mark)
        return node

    def _count(self, nodes: int, mark: yaml.Mark) -> None:
        self._expanded += nodes
        if self._expanded > MAX_NODES:
            raise _Refused(f"the document expands to more than {MAX_NODES} nodes (aliases counted at each use)",
                           mark)

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> _Map:  # type: ignore[override]
        self.flatten_mapping(node)
        out = _Map()
        out.line = node.start_mark.line + 1
        out.key_lines = {}
        for key_node, value_node in node.value:
            key = self.construct_object(key_node, deep=True)
            if key in out:
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key {key!r}", key_node.start_mark
                )
            out[key] = self.construct_object(value_node, deep=True)
            out.key_lines[key] = key_node.start_mark.line + 1
        return out

    def construct_sequence(self, node: yaml.SequenceNode, deep: bool = False) -> _Seq:  # type: ignore[override]
        out = _Seq(self.construct_object(child, deep=True) for child in node.value)
        out.line = node.start_mark.line + 1
        out.item_lines = [child.start_mark.line + 1 for child in node.value]
        return out


_LineLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _LineLoader.construct_mapping)
_LineLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_SEQUENCE_TAG, _LineLoader.construct_sequence)


def _line_of(doc: Any, loc: tuple[Any, ...]) -> int | None:
    """Line of the deepest node of `loc` that exists in the YAML document."""
    line = getattr(doc, "line", None)
    node = doc
    for key in loc:
        if isinstance(node, _Map) and key in node:
            line, node = node.key_lines[key], node[key]
        elif isinstance(node, _Seq) and isinstance(key, int) and 0 <= key < len(node):
            line, node = node.item_lines[key], node[key]
        else:
            break
    return line


def _path(loc: tuple[Any, ...]) -> str:
    out = ""
    for key in loc:
        out += f"[{key}]" if isinstance(key, int) else (f".{key}" if out else str(key))
    return out


def _describe(value: Any) -> str:
    if isinstance(value, (dict, list)):
        text = repr(dict(value) if isinstance(value, dict) else list(value))
        return text if len(text) <= 60 else text[:57] + "..."
    return repr(value)


# --- loading ------------------------------------------------------------------------------------


@dataclass
class _Item:
    """A validated section item and where it came from."""

    value: Any
    file: str
    doc: Any
    loc: tuple[Any, ...]

    def issue(self, sub: tuple[Any, ...], message: str) -> ConfigIssue:
        loc = self.loc + sub
        return ConfigIssue(self.file, _line_of(self.doc, loc), _path(loc), message)


def _pydantic_issues(err: ValidationError, file: str, doc: Any, base: tuple[Any, ...]) -> list[ConfigIssue]:
    out = []
    for e in err.errors():
        loc = base + tuple(e["loc"])
        msg = e["msg"]
        msg = msg.removeprefix("Value error, ")
        msg = msg.replace("Input should be", "must be").replace("Field required", "missing (required)")
        if e["type"] == "extra_forbidden":
            msg = "unknown field"
        elif e["type"] != "missing":
            msg += f", got {_describe(e['input'])}"
        out.append(ConfigIssue(file, _line_of(doc, loc), _path(loc), msg))
    return out


_KINDS = ((stat.S_ISDIR, "a directory"), (stat.S_ISFIFO, "a FIFO"), (stat.S_ISCHR, "a character device"),
          (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket"))


def _not_regular(mode: int) -> str | None:
    if stat.S_ISREG(mode):
        return None
    return next((f"not a regular file ({kind})" for test, kind in _KINDS if test(mode)), "not a regular file")


def _read_text(path: Path) -> str:
    """A regular file's UTF-8 text, of at most :data:`MAX_FILE_BYTES`; anything else raises ValueError
    without blocking (a FIFO is opened non-blocking, and refused after the open as before it)."""
    if problem := _not_regular(os.stat(path).st_mode):  # before the open: opening a device may act
        raise ValueError(problem)
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    with os.fdopen(fd, "rb") as f:
        if problem := _not_regular(os.fstat(fd).st_mode):  # replaced since the stat
            raise ValueError(problem)
        data = f.read(MAX_FILE_BYTES + 1)
    if len(data) > MAX_FILE_BYTES:
        raise ValueError(f"larger than {MAX_FILE_BYTES} bytes")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ValueError(f"not UTF-8 text (at byte offset {exc.start})") from None


def _read_documents(paths: list[Path], issues: list[ConfigIssue]) -> list[tuple[str, Any]]:
    """Parse every file (following `include:`), each at most once."""
    docs: list[tuple[str, Any]] = []
    seen: set[Path] = set()

    def visit(path: Path, shown: str) -> None:
        try:
            resolved = path.resolve()
        except (OSError, RuntimeError) as exc:  # RuntimeError: a symlink loop
            issues.append(ConfigIssue(shown, None, "", f"cannot read file: {exc}"))
            return
        if resolved in seen:
            return
        if len(seen) >= MAX_FILES:
            issues.append(ConfigIssue(shown, None, "", f"more than {MAX_FILES} files to read (includes counted)"))
            return
        seen.add(resolved)
        try:
            text = _read_text(path)
        except OSError as exc:
            issues.append(ConfigIssue(shown, None, "", f"cannot read file: {exc.strerror or exc}"))
            return
        except ValueError as exc:
            issues.append(ConfigIssue(shown, None, "", f"cannot read file: {exc}"))
            return
        try:
            doc = yaml.load(text, Loader=_LineLoader)
        except _Refused as exc:
            issues.append(ConfigIssue(shown, exc.problem_mark.line + 1, "", f"refused: {exc.problem}"))
            return
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
            problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
            issues.append(ConfigIssue(shown, mark.line + 1 if mark else None, "", f"malformed YAML: {problem}"))
            return
        except ValueError as exc:  # a scalar the constructor cannot convert (an int of 5000 digits, 2020-13-45)
            issues.append(ConfigIssue(shown, None, "", f"malformed YAML: {exc}"))
            return
        if doc is None:
            issues.append(ConfigIssue(shown, None, "", "file is empty"))
            return
        if not isinstance(doc, dict):
            issues.append(
                ConfigIssue(shown, getattr(doc, "line", None), "", "top level must be a mapping of sections")
            )
            return
        for key in doc:
            if key not in (*SECTIONS, "include", "serve"):
                issues.append(
                    ConfigIssue(
                        shown, _line_of(doc, (key,)), str(key),
                        f"unknown section (expected one of {', '.join(SECTIONS)}, serve, include)",
                    )
                )
        includes = doc.get("include", [])
        if isinstance(includes, str):
            includes = [includes]
        if not isinstance(includes, list) or not all(isinstance(i, str) for i in includes):
            issues.append(ConfigIssue(shown, _line_of(doc, ("include",)), "include", "must be a list of paths"))
            includes = []
        for inc in includes:
            target = packaged(inc) if inc.startswith(PACKAGED) else path.parent / inc
            if not target.exists():
                issues.append(
                    ConfigIssue(shown, _line_of(doc, ("include",)), "include", f"no such file {inc!r}")
                )
                continue
            visit(target, str(target))
        docs.append((shown, doc))

    for p in paths:
        visit(Path(p), str(p))
    return docs


def load_profile_rows(paths: list[str | Path]) -> dict[tuple[str, str], dict[int, tuple[float, float]]]:
    """`(model, hardware) -> {batch: (mean_ms, std_ms)}` from the `profiles` sections of YAML files
    (what an emulated worker sleeps), read as a configuration is: bounded, and every problem named."""
    issues: list[ConfigIssue] = []
    out: dict[tuple[str, str], dict[int, tuple[float, float]]] = {}
    for file, doc in _read_documents([Path(p) for p in paths], issues):
        profiles = doc.get("profiles", [])
        if not isinstance(profiles, list):
            issues.append(ConfigIssue(file, _line_of(doc, ("profiles",)), "profiles", "must be a list"))
            continue
        for i, raw in enumerate(profiles):
            try:
                p = Profile.model_validate(raw)
            except ValidationError as err:
                issues += _pydantic_issues(err, file, doc, ("profiles", i))
                continue
            out[(p.model, p.hardware)] = {r.batch: (r.mean_ms, r.std_ms) for r in p.batches}
    if issues:
        raise ConfigError(issues)
    return out


def load_workload(paths: list[str | Path]) -> Workload:
    """Read, merge and validate the given YAML files; raise :class:`ConfigError` listing every problem."""
    issues: list[ConfigIssue] = []
    if not paths:
        raise ConfigError([ConfigIssue("<arguments>", None, "", "no input files given")])
    docs = _read_documents([Path(p) for p in paths], issues)

    items: dict[str, list[_Item]] = {s: [] for s in SECTIONS}
    # Names declared by every entry, valid or not, so that one bad entry is reported once and not
    # again as a dangling reference.
    declared: dict[str, set[Any]] = {s: set() for s in SECTIONS}
    for file, doc in docs:
        for section in SECTIONS:
            if section not in doc:
                continue
            entries = doc[section]
            if not isinstance(entries, list):
                issues.append(ConfigIssue(file, _line_of(doc, (section,)), section, "must be a list"))
                continue
            for i, raw in enumerate(entries):
                if isinstance(raw, dict):
                    declared[section].add(_key(section, raw))
                try:
                    value = _SECTION_TYPES[section].model_validate(raw)
                except ValidationError as err:
                    issues.extend(_pydantic_issues(err, file, doc, (section, i)))
                    continue
                items[section].append(_Item(value, file, doc, (section, i)))

    serve = None
    for file, doc in docs:
        if "serve" not in doc:
            continue
        if serve is not None:
            issues.append(ConfigIssue(file, _line_of(doc, ("serve",)), "serve", "given in more than one file"))
            continue
        try:
            serve = ServeConfig.model_validate(doc["serve"])
        except ValidationError as err:
            issues.extend(_pydantic_issues(err, file, doc, ("serve",)))
            continue
        # the weights folder is the config's business: relative to its file, as includes are
        folder = (Path(file).parent / (serve.weights_dir or ".")).resolve()
        serve = serve.model_copy(update={"weights_dir": str(folder)})
    issues.extend(_cross_check(items, declared))
    if not issues:
        for section, what in (("hardware", "hardware"), ("profiles", "profiles"), ("apps", "apps")):
            if not items[section]:
                issues.append(ConfigIssue(", ".join(f for f, _ in docs) or "<input>", None, section,
                                          f"no {what} given in any input file"))
    if issues:
        raise ConfigError(issues)
    return Workload(
        hardware=tuple(i.value for i in items["hardware"]),
        profiles=tuple(i.value for i in items["profiles"]),
        apps=tuple(i.value for i in items["apps"]),
        serve=serve,
    )


def _duplicates(items: list[_Item], key: Any, field: tuple[Any, ...], what: str) -> list[ConfigIssue]:
    counts = Counter(key(i.value) for i in items)
    first: dict[Any, _Item] = {}
    out = []
    for item in items:
        k = key(item.value)
        if counts[k] > 1:
            if k in first:
                prev = first[k]
                out.append(item.issue(field, f"duplicate {what} {k!r} (first at {prev.file}:"
                                             f"{_line_of(prev.doc, prev.loc)})"))
            else:
                first[k] = item
    return out


def _key(section: str, raw: dict) -> Any:
    if section == "profiles":
        return (raw.get("model"), raw.get("hardware"))
    return raw.get("name")


def _cross_check(items: dict[str, list[_Item]], declared: dict[str, set[Any]]) -> list[ConfigIssue]:
    issues: list[ConfigIssue] = []
    hw, profiles, apps = items["hardware"], items["profiles"], items["apps"]
    issues += _duplicates(hw, lambda h: h.name, ("name",), "hardware name")
    issues += _duplicates(apps, lambda a: a.name, ("name",), "app name")
    issues += _duplicates(profiles, lambda p: (p.model, p.hardware), (), "profile (model, hardware)")

    hw_names = {n for n in declared["hardware"] if isinstance(n, str)}
    for item in profiles:
        p: Profile = item.value
        if p.hardware not in hw_names:
            issues.append(item.issue(("hardware",), f"unknown hardware {p.hardware!r}"
                                     f" (declared: {', '.join(sorted(hw_names)) or 'none'})"))
        seen: set[int] = set()
        for j, row in enumerate(p.batches):
            if row.batch in seen:
                issues.append(item.issue(("batches", j), f"duplicate batch size {row.batch}"))
            seen.add(row.batch)

    profiled = {model for model, _ in declared["profiles"]}
    for item in apps:
        issues += _check_app(item, profiled)
    if not issues:
        issues += _check_decode(apps, [i.value for i in hw], [i.value for i in profiles])
    return issues


def _check_decode(apps: list[_Item], hardware: list[Hardware], profiles: list[Profile]) -> list[ConfigIssue]:
    """An app that declares its frames needs a decode figure for their encoding on every hardware kind that
    could run a module taking them: a cost left out would be a plan that does not hold."""
    figures = {h.name: h.decode_ms_per_mpixel for h in hardware}
    kinds: dict[str, list[str]] = {}
    for p in profiles:
        kinds.setdefault(p.model, []).append(p.hardware)
    issues = []
    for item in apps:
        app: App = item.value
        if app.frame is None:
            continue
        enc = app.frame.encoding
        lacking = sorted({hw for m in app.modules if m.input == "frame" for hw in kinds.get(m.model, ())
                          if enc not in figures.get(hw, {})})
        if lacking:
            issues.append(item.issue(("frame", "encoding"), f"{enc!r} frames: no decode_ms_per_mpixel for {enc!r} "
                                     f"on hardware {', '.join(map(repr, lacking))}, which may run the modules "
                                     "that take the frame (`harpagon profile --decode` measures it)"))
    return issues


def _check_app(item: _Item, profiled: set[str]) -> list[ConfigIssue]:
    app: App = item.value
    issues: list[ConfigIssue] = []
    names = [m.name for m in app.modules]
    counts = Counter(names)
    for j, m in enumerate(app.modules):
        if counts[m.name] > 1 and names.index(m.name) != j:
            issues.append(item.issue(("modules", j, "name"), f"duplicate module name {m.name!r}"))
        if m.model not in profiled:
            issues.append(item.issue(("modules", j, "model"),
                                     f"unknown model {m.model!r}: it has no profile on any hardware"))
        for k, parent in enumerate(m.after):
            if parent not in counts:
                issues.append(item.issue(("modules", j, "after", k), f"edge to unknown module {parent!r}"))
            elif parent == m.name:
                issues.append(item.issue(("modules", j, "after", k), f"module {m.name!r} is its own parent"))
        if len(set(m.after)) != len(m.after):
            issues.append(item.issue(("modules", j, "after"), f"repeated parent in {list(m.after)!r}"))
    if issues:
        return issues

    cycle = _find_cycle(app)
    if cycle:  # a graph with no source always has a cycle: report the cycle
        return [item.issue(("modules",), f"cycle: {' -> '.join(cycle)}")]
    sources = [m.name for m in app.modules if not m.after]
    if len(sources) > 1:
        issues.append(item.issue(("modules",), f"more than one source module: {', '.join(sources)} "
                                               "(exactly one module may have no `after`)"))
        return issues
    # what the edges carry fits what the parents output
    return [item.issue(("modules", j, *sub), message) for j, sub, message in pipeline.check(app)]


def _find_cycle(app: App) -> list[str] | None:
    parents = {m.name: m.after for m in app.modules}
    state: dict[str, int] = {}  # 1 = on the stack, 2 = done

    def visit(node: str, stack: list[str]) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for p in parents[node]:
            if state.get(p) == 1:
                return [*stack[stack.index(p):], p][::-1]
            if p not in state and (found := visit(p, stack)):
                return found
        stack.pop()
        state[node] = 2
        return None

    for name in parents:
        if name not in state and (found := visit(name, [])):
            return found
    return None
