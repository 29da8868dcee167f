#!/usr/bin/env python3
"""Rewrite references to documents outside this repository into links to its own docs.

Comments used to cite "spec 10.3", "spec section 8.3", "design.md section 3" and the like: the
sections of a service reference and a design note that never were in the repository. Their
content, in cloudrec's own words, is in ``docs/service/*.md`` and ``docs/design.md``; this script
replaces each citation with the page and anchor that now holds it, using :data:`SPEC` and
:data:`DESIGN` (old section number -> new anchor).

    python tools/fix_doc_refs.py            rewrite the tree, print every change
    python tools/fix_doc_refs.py --check    change nothing; exit 1 if anything would change
    python tools/fix_doc_refs.py FILE...    only these files

Deterministic and idempotent: a rewritten reference no longer matches, so a second run changes
nothing; run it again after merging branches that add old-style references.

Where it rewrites: in ``.py`` files only comments and triple-quoted strings (docstrings), never
code; in Markdown the citation becomes a link (relative to the file); in ``pyproject.toml`` the
comments. A Python line that grows past :data:`MAX_LINE` is re-wrapped: the overflow is carried
into the next line of the same comment block or docstring paragraph (or a new line), and a
trailing comment that no longer fits moves to its own line above the statement.
"""

from __future__ import annotations

import argparse
import io
import os
import re
import sys
import tokenize
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MAX_LINE = 100
MAX_ANCHORS = 3  # a range citing more sections than this links their pages

API = "docs/service/api-contract.md"
ERR = "docs/service/errors.md"
NCS = "docs/service/ncs.md"
FILES = "docs/service/files.md"
BEH = "docs/service/behaviour.md"
DESIGN_DOC = "docs/design.md"

# Sections of the service reference (spec/cloud-recording-api.md) -> where this repository says it.
SPEC: dict[str, str] = {
    "1": API,
    "1.1": f"{API}#endpoints",
    "1.2": f"{API}#authentication",
    "1.3": f"{API}#base-domains",
    "1.4": f"{API}#limits",
    "2": f"{API}#acquire",
    "3": f"{API}#start",
    "3.1": f"{API}#start",
    "3.2": f"{API}#recordingconfig",
    "3.3": f"{API}#transcodingconfig",
    "3.4": f"{API}#recordingfileconfig",
    "3.5": f"{API}#storageconfig",
    "3.6": f"{API}#start-answers",
    "3.7": f"{API}#start",
    "4": f"{API}#query",
    "4.1": f"{API}#status-values",
    "4.2": f"{API}#file-lists",
    "4.3": f"{ERR}#not-found",
    "5": f"{API}#update",
    "6": f"{API}#updatelayout",
    "7": f"{API}#stop",
    "8": ERR,
    "8.1": f"{ERR}#body-shapes",
    "8.2": f"{ERR}#codes",
    "8.3": f"{ERR}#classification",
    "9": FILES,
    "9.1": f"{FILES}#naming",
    "9.2": f"{FILES}#failover",
    "9.3": f"{FILES}#slicing",
    "9.4": f"{FILES}#mp4",
    "10": BEH,
    "10.1": f"{BEH}#maxidletime",
    "10.2": f"{BEH}#lifetime",
    "10.3": f"{BEH}#identity",
    "10.4": f"{BEH}#canvas",
    "10.5": f"{BEH}#monitoring",
    "10.6": f"{BEH}#backup-recordings",
    "11": NCS,
    "11.1": f"{NCS}#transport",
    "11.2": f"{NCS}#envelope",
    "11.3": f"{NCS}#event-types",
    "12": f"{API}#official-clients",
    "12.1": f"{API}#official-clients",
    "12.2": f"{API}#official-clients",
    "12.3": f"{API}#official-clients",
    "12.4": f"{API}#official-clients",
    "12.5": f"{API}#official-clients",
    "13": f"{ERR}#not-found",
    "14": f"{DESIGN_DOC}#emulator",
    "14.1": f"{API}#start-answers",
    "14.2": f"{API}#authentication",
    "14.3": f"{API}#acquire",
    "14.4": f"{API}#status-values",
    "14.5": f"{BEH}#maxidletime",
    "14.6": f"{API}#stop",
    "14.7": f"{DESIGN_DOC}#emulator",
    "14.8": f"{API}#validation",
    "14.9": f"{API}#updatelayout",
    "14.10": f"{NCS}#transport",
    "14.11": f"{API}#limits",
    "15": API,
}

# Sections of the old design note (design.md) -> docs/design.md.
DESIGN: dict[str, str] = {
    "1": f"{DESIGN_DOC}#components",
    "2": f"{DESIGN_DOC}#the-job",
    "3": f"{DESIGN_DOC}#scheduling",
    "4": f"{DESIGN_DOC}#results-and-callbacks",
    "5": f"{DESIGN_DOC}#emulator",
    "6": f"{DESIGN_DOC}#tests",
    "7": f"{DESIGN_DOC}#code-style",
    "8": f"{DESIGN_DOC}#fixed-interfaces",
    "9": f"{DESIGN_DOC}#fixed-interfaces",
}

# Odd forms that the patterns below cannot read well, replaced verbatim first ({n}: SPEC[n]).
LITERALS: dict[str, str] = {
    "Section numbers in comments refer to ``spec/cloud-recording-api.md``.": (
        "Links in comments point at docs/service/, the service's behaviour in cloudrec's words."
    ),
    "# 3.3 transcodingConfig and 6 updateLayout": (
        "# transcodingConfig ({3.3}) and updateLayout ({6})"
    ),
    "updateLayout (6)": "updateLayout ({6})",
    "(``spec/cloud-recording-api.md`` sections 2-7)": "({1})",
}
# A file holding this sentence cites bare section numbers ("(8.2)", "# 3.5:"): they are read too.
BARE_MARKER = "Section numbers in comments refer to ``spec/cloud-recording-api.md``."

SKIP_DIRS = {".git", ".venv", "node_modules", "__pycache__", ".mypy_cache", ".ruff_cache"}
# The new documents themselves, and this tool and its test (which cite old forms on purpose).
SKIP_FILES = {
    "tools/fix_doc_refs.py",
    "tests/test_doc_refs.py",
    "docs/design.md",
}
SKIP_PREFIXES = ("docs/service/",)

_NUM = r"\d{1,2}(?:\.\d{1,2})?"
_ITEM = rf"{_NUM}(?:-{_NUM})?"
_SEP = r"(?:\s*,\s*|\s*/\s*|\s+and\s+)"
_LIST = rf"{_ITEM}(?:{_SEP}{_ITEM})*"
_END = r"(?![\w%])(?!\.\d)"

SPEC_RE = re.compile(
    rf"(?:\b[Ss]pec(?:ification)?\s+(?:sections?\s+)?|(?<![\w./])sections?\s+(?=\d+\.\d))"
    rf"(?P<list>{_LIST}){_END}"
)
DESIGN_RE = re.compile(rf"\bdesign\.md\s+(?:sections?\s+)?(?P<list>{_LIST}){_END}")
BARE_RE = re.compile(rf"(?<![\w.#/-])(?P<list>{_LIST}){_END}")
# In any file that cites the service reference, "(8.1)" / "(9.2, 10.3)" alone in parentheses.
_DOTTED = r"\d{1,2}\.\d{1,2}"
PAREN_BARE_RE = re.compile(rf"(?<=\()(?P<list>{_DOTTED}(?:{_SEP}{_DOTTED})*)(?=\))")


@dataclass(frozen=True)
class Change:
    path: str
    line: int
    old: str
    new: str


def expand(items: str, table: dict[str, str]) -> list[str] | None:
    """The targets of a list like ``3.2, 5`` / ``8.2/8.3`` / ``2-7``; None if any is unknown."""
    targets: list[str] = []
    for item in re.split(_SEP, items):
        keys = _range(item)
        span: list[str] = []
        for key in keys:
            target = table.get(key)
            if target is None:
                return None
            if target not in span:
                span.append(target)
        if len(span) > MAX_ANCHORS:  # a wide range ("2-7"): its pages, not every anchor
            span = list(dict.fromkeys(t.split("#")[0] for t in span))
        targets.extend(t for t in span if t not in targets)
    return _collapse(targets)


def _range(item: str) -> list[str]:
    if "-" not in item:
        return [item]
    low, high = item.split("-")
    if "." in low and "." in high and low.split(".")[0] == high.split(".")[0]:
        major = low.split(".")[0]
        return [f"{major}.{n}" for n in range(int(low.split(".")[1]), int(high.split(".")[1]) + 1)]
    # A range of whole sections (2-7): each section's page.
    return [str(n) for n in range(int(low.split(".")[0]), int(high.split(".")[0]) + 1)]


def _collapse(targets: list[str]) -> list[str]:
    """A page cited whole absorbs its own anchors; order is kept."""
    pages = {t for t in targets if "#" not in t}
    out: list[str] = []
    for target in targets:
        page = target.split("#")[0]
        if "#" in target and page in pages:
            target = page
        if target not in out:
            out.append(target)
    return out


Render = Callable[[list[str]], str]


def plain(targets: list[str]) -> str:
    return ", ".join(targets)


def markdown_links(md_path: str) -> Render:
    """Links relative to the Markdown file, labelled with the page and section."""
    base = os.path.dirname(md_path)

    def render(targets: list[str]) -> str:
        links = []
        for target in targets:
            page, _, anchor = target.partition("#")
            rel = os.path.relpath(page, base or ".").replace(os.sep, "/")
            label = Path(page).stem + (f": {anchor.replace('-', ' ')}" if anchor else "")
            links.append(f"[{label}]({rel}{'#' + anchor if anchor else ''})")
        return ", ".join(links)

    return render


def rewrite_text(text: str, render: Render, *, bare: bool, paren_bare: bool = False) -> str:
    """Every citation in ``text`` replaced by ``render(targets)``; unknown ones are left.

    ``bare``: also bare section numbers ("# 3.5:", "(8.2 code 2)"); ``paren_bare``: also
    dotted section numbers alone in parentheses ("(8.1)")."""
    for old, new in LITERALS.items():
        if old in text:
            text = text.replace(old, re.sub(r"\{([\d.]+)\}", lambda m: render([SPEC[m[1]]]), new))

    def sub(table: dict[str, str]) -> Callable[[re.Match[str]], str]:
        def one(match: re.Match[str]) -> str:
            targets = expand(match["list"], table)
            return match[0] if targets is None else render(targets)

        return one

    text = DESIGN_RE.sub(sub(DESIGN), text)
    text = SPEC_RE.sub(sub(SPEC), text)
    if bare:
        text = BARE_RE.sub(_bare(render), text)
    if paren_bare:
        text = PAREN_BARE_RE.sub(sub(SPEC), text)
    return text


def _bare(render: Render) -> Callable[[re.Match[str]], str]:
    def one(match: re.Match[str]) -> str:
        items = re.split(_SEP, match["list"])
        # Only lists with a dotted number ("8.2", "2 / 8.2"): a lone "6" or "17" is not a section.
        if not any("." in item for item in items):
            return match[0]
        targets = expand(match["list"], SPEC)
        return match[0] if targets is None else render(targets)

    return one


# -- Python: comments and docstrings only, then re-wrap what grew too long ----------------------


def rewrite_python(source: str) -> str:
    bare = BARE_MARKER in source
    # A module that cites the service reference (or, once rewritten, its docs) means it by a
    # lone "(8.1)" too. Deterministic either way: the docs link is what such a module ends with.
    paren_bare = bare or "docs/service/" in source or SPEC_RE.search(source) is not None
    regions = list(_text_regions(source))
    lines = source.splitlines(keepends=True)
    offsets = [0]
    for line in lines:
        offsets.append(offsets[-1] + len(line))
    out = source
    changed_lines: set[int] = set()
    for (srow, scol), (erow, ecol), _ in reversed(regions):
        start, end = offsets[srow - 1] + scol, offsets[erow - 1] + ecol
        new = rewrite_text(out[start:end], plain, bare=bare, paren_bare=paren_bare)
        if new != out[start:end]:
            out = out[:start] + new + out[end:]
            changed_lines.add(srow)
    if not changed_lines:
        return source
    return _rewrap(out)


def _text_regions(source: str) -> Iterator[tuple[tuple[int, int], tuple[int, int], str]]:
    tokens = tokenize.generate_tokens(io.StringIO(source).readline)
    for tok in tokens:
        if tok.type == tokenize.COMMENT:
            yield tok.start, tok.end, "comment"
        elif tok.type == tokenize.STRING and re.match(r"^[rRbBuUfF]*(\"\"\"|''')", tok.string):
            yield tok.start, tok.end, "string"


def _rewrap(source: str) -> str:
    """Re-wrap lines over MAX_LINE that hold a docs link (only those: others are not ours)."""
    lines = source.split("\n")
    start = 0
    while (i := _next_long(lines, start)) is not None:
        string_rows = _string_rows("\n".join(lines))
        line = lines[i]
        if _shorten_ruler(lines, i):
            pass
        elif i + 1 in string_rows:
            _wrap_block(lines, i, comment=False, rows=string_rows)
        elif line.lstrip().startswith("#"):
            _wrap_block(lines, i, comment=True, rows=string_rows)
        elif "docs/" in _trailing_comment(line):
            _move_trailing_comment(lines, i)
            continue  # wrap the moved comment line next
        start = i + 1
    return "\n".join(lines)


def _shorten_ruler(lines: list[str], i: int) -> bool:
    """``# -- title ------`` comment rulers lose dashes (down to 3) instead of wrapping."""
    match = re.match(r"^(\s*#.*?) (-{3,})$", lines[i])
    if match is None:
        return False
    room = MAX_LINE - len(match[1]) - 1
    lines[i] = f"{match[1]} {'-' * room}" if room >= 3 else match[1]
    return len(lines[i]) <= MAX_LINE


def _next_long(lines: list[str], start: int) -> int | None:
    for i in range(start, len(lines)):
        if len(lines[i]) > MAX_LINE and "docs/" in lines[i]:
            return i
    return None


def _string_rows(source: str) -> set[int]:
    """1-based rows that lie inside a triple-quoted string (its first row included)."""
    rows: set[int] = set()
    for (srow, _), (erow, _), kind in _text_regions(source):
        if kind == "string":
            rows.update(range(srow, erow + 1))
    return rows


def _move_trailing_comment(lines: list[str], i: int) -> None:
    line = lines[i]
    comment = _trailing_comment(line)
    code = line[: line.rindex(comment)]
    indent = line[: len(line) - len(line.lstrip())]
    lines[i] = code.rstrip()
    lines.insert(i, f"{indent}{comment}")


def _trailing_comment(line: str) -> str:
    """The comment at the end of a line of code ("" if none, or if the line is not whole code)."""
    try:
        for tok in tokenize.generate_tokens(io.StringIO(line.strip() + "\n").readline):
            if tok.type == tokenize.COMMENT:
                return tok.string
    except (tokenize.TokenError, SyntaxError, IndentationError):
        pass
    return ""


def _wrap_block(lines: list[str], i: int, *, comment: bool, rows: set[int]) -> None:
    """Split line i at MAX_LINE; carry the rest into the next line of its paragraph, repeatedly.

    ``rows``: the 1-based rows inside triple-quoted strings (a docstring's words are only
    carried into a line of the same string)."""
    while i < len(lines) and len(lines[i]) > MAX_LINE:
        line = lines[i]
        prefix, _ = _prefix(line, comment=comment)
        cont = _continuation_prefix(line, prefix, comment=comment)
        cut = _cut(line, len(prefix))
        if cut is None:
            return  # one unbreakable word: leave it
        head, rest = line[:cut].rstrip(), line[cut:].strip()
        lines[i] = head
        nxt = lines[i + 1] if i + 1 < len(lines) else None
        same_block = comment or (i + 2 in rows and not re.search(r"\"\"\"|\'\'\'", rest))
        if nxt is not None and same_block and _continues(nxt, cont, comment=comment):
            lines[i + 1] = f"{cont}{rest} {nxt[len(cont) :]}"
        else:
            lines.insert(i + 1, f"{cont}{rest}")
            rows = {r + 1 if r > i + 1 else r for r in rows} | {i + 2}
        i += 1


def _prefix(line: str, *, comment: bool) -> tuple[str, str]:
    if comment:
        match = re.match(r"^(\s*#\s?)(.*)$", line)
    else:
        match = re.match(r"^(\s*(?:[rRbBuUfF]*\"\"\")?)(.*)$", line)
    assert match is not None
    return match[1], match[2]


def _continuation_prefix(line: str, prefix: str, *, comment: bool) -> str:
    indent = line[: len(line) - len(line.lstrip())]
    body = line[len(prefix) :]
    hang = "  " if re.match(r"^([-*]|\d+\.)\s", body) else ""
    if comment:
        return f"{indent}# {hang}" if prefix.rstrip().endswith("#") else prefix + hang
    return indent + hang


def _continues(line: str, prefix: str, *, comment: bool) -> bool:
    """Whether ``line`` goes on with the same paragraph (so carried words may join it)."""
    if not line.startswith(prefix) or len(line) == len(prefix):
        return False
    body = line[len(prefix) :]
    if body[0].isspace() or re.match(r"^([-*]|\d+\.)\s|^(\"\"\"|'''|::|\.\. )", body):
        return False
    return comment or "#" not in line[: len(prefix)]


def _cut(line: str, start: int) -> int | None:
    """Where to split ``line``: the last space at or before MAX_LINE (after ``start``) that is
    not inside an RST inline literal (````...````); else the first space after MAX_LINE."""
    spaces = [i for i, c in enumerate(line) if c == " " and i > start]
    fitting = [i for i in spaces if i <= MAX_LINE]
    for cut in reversed(fitting):
        if line[:cut].count("``") % 2 == 0:
            return cut
    if fitting:
        return fitting[-1]
    later = [i for i in spaces if i > MAX_LINE]
    return later[0] if later else None


# -- Markdown and TOML ---------------------------------------------------------------------


def rewrite_markdown(text: str, path: str) -> str:
    return rewrite_text(text, markdown_links(path), bare=False)


def rewrite_toml(text: str) -> str:
    out = []
    for line in text.splitlines(keepends=True):
        code, hash_, comment = line.partition("#")
        out.append(code + hash_ + rewrite_text(comment, plain, bare=False) if hash_ else line)
    return "".join(out)


def rewrite_file(rel: str, text: str) -> str:
    if rel.endswith(".py"):
        return rewrite_python(text)
    if rel.endswith(".md"):
        return rewrite_markdown(text, rel)
    if rel.endswith(".toml"):
        return rewrite_toml(text)
    return text


def candidate_files(root: Path) -> Iterator[str]:
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if d not in SKIP_DIRS)
        for name in sorted(filenames):
            rel = os.path.relpath(os.path.join(dirpath, name), root).replace(os.sep, "/")
            if not name.endswith((".py", ".md", ".toml")):
                continue
            if rel in SKIP_FILES or rel.startswith(SKIP_PREFIXES):
                continue
            yield rel


def changes(rel: str, old: str, new: str) -> Iterator[Change]:
    """Changed lines, for the report (pairs by position; wrapping may shift a line or two)."""
    import difflib

    a, b = old.splitlines(), new.splitlines()
    matcher = difflib.SequenceMatcher(a=a, b=b, autojunk=False)
    for tag, i1, i2, j1, j2 in matcher.get_opcodes():
        if tag != "equal":
            yield Change(rel, i1 + 1, "\n".join(a[i1:i2]), "\n".join(b[j1:j2]))


def run(root: Path, files: Iterable[str], *, write: bool) -> list[Change]:
    found: list[Change] = []
    for rel in files:
        path = root / rel
        old = path.read_text(encoding="utf-8")
        new = rewrite_file(rel, old)
        if new == old:
            continue
        found.extend(changes(rel, old, new))
        if write:
            path.write_text(new, encoding="utf-8")
    return found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("files", nargs="*", help="files relative to the repository root")
    parser.add_argument("--check", action="store_true", help="change nothing; exit 1 if needed")
    parser.add_argument("--root", type=Path, default=ROOT)
    args = parser.parse_args(argv)
    files = args.files or list(candidate_files(args.root))
    found = run(args.root, files, write=not args.check)
    for change in found:
        print(f"{change.path}:{change.line}")
        for line in change.old.splitlines():
            print(f"  - {line.strip()}")
        for line in change.new.splitlines():
            print(f"  + {line.strip()}")
    verb = "would change" if args.check else "changed"
    print(f"{verb} {len(found)} places in {len({c.path for c in found})} files", file=sys.stderr)
    return 1 if (args.check and found) else 0


if __name__ == "__main__":
    sys.exit(main())
