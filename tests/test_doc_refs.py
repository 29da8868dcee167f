"""The repository's own documents: every link into docs/ resolves, and no comment cites a
document that is not in the repository (tools/fix_doc_refs.py rewrites such citations)."""

from __future__ import annotations

import ast
import importlib.util
import re
import sys
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parent.parent
API, BEH, FILES = (
    "docs/service/api-contract.md",
    "docs/service/behaviour.md",
    "docs/service/files.md",
)
DOCS = [ROOT / "docs" / "design.md", *sorted((ROOT / "docs" / "service").glob("*.md"))]


def _load_tool() -> ModuleType:
    path = ROOT / "tools" / "fix_doc_refs.py"
    spec = importlib.util.spec_from_file_location("fix_doc_refs", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["fix_doc_refs"] = module
    spec.loader.exec_module(module)
    return module


tool = _load_tool()


def slug(heading: str) -> str:
    """GitHub's anchor for a Markdown heading."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def anchors(path: Path) -> set[str]:
    text = path.read_text(encoding="utf-8")
    text = re.sub(r"```.*?```", "", text, flags=re.S)  # no headings inside code blocks
    return {slug(m[1]) for m in re.finditer(r"^#{1,6}\s+(.+)$", text, flags=re.M)}


def assert_target(target: str, base: Path) -> None:
    page, _, anchor = target.partition("#")
    path = (base / page).resolve()
    assert path.exists(), f"{target}: no file {path}"
    if anchor and path.suffix == ".md":
        found = anchors(path)
        assert anchor in found, f"{target}: no heading with anchor #{anchor} in {page}: {found}"


@pytest.mark.parametrize("table", ["SPEC", "DESIGN"])
def test_every_mapped_section_has_a_page_and_anchor(table: str) -> None:
    for section, target in getattr(tool, table).items():
        assert target.startswith("docs/"), (section, target)
        assert_target(target, ROOT)


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: p.name)
def test_links_in_the_docs_resolve(doc: Path) -> None:
    text = doc.read_text(encoding="utf-8")
    links = re.findall(r"\]\(([^)\s]+)\)", text)
    for link in links:
        if link.startswith(("http://", "https://")):
            continue
        if link.startswith("#"):
            assert link[1:] in anchors(doc), f"{doc.name}: {link}"
            continue
        assert_target(link, doc.parent)


DOC_LINK = re.compile(r"(?<![\w/.])(docs/[\w/.-]+\.md)(#[\w-]+)?")


def test_every_docs_link_in_the_repository_resolves() -> None:
    """``docs/service/files.md#failover`` in a comment must name a page and a heading there."""
    broken = []
    for rel in tool.candidate_files(ROOT):
        text = (ROOT / rel).read_text(encoding="utf-8")
        for match in DOC_LINK.finditer(text):
            page, anchor = match[1], (match[2] or "")[1:]
            path = ROOT / page
            if not path.is_file() or (anchor and anchor not in anchors(path)):
                broken.append(f"{rel}: {match[0]}")
    assert not broken, "\n".join(broken)


def test_no_citation_of_documents_outside_the_repository() -> None:
    """Fails after a merge that brought old-style citations: run tools/fix_doc_refs.py."""
    found = tool.run(ROOT, tool.candidate_files(ROOT), write=False)
    report = "\n".join(f"{c.path}:{c.line}: {c.old.strip()}" for c in found)
    assert not found, f"run `python tools/fix_doc_refs.py` to rewrite these:\n{report}"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("see spec 10.3", "see docs/service/behaviour.md#identity"),
        ("(spec section 8.3)", "(docs/service/errors.md#classification)"),
        ("(spec 9.2, 10.3)", f"({FILES}#failover, {BEH}#identity)"),
        ("spec 8.2/8.3.", "docs/service/errors.md#codes, docs/service/errors.md#classification."),
        ("(spec 3.2 / 5)", f"({API}#recordingconfig, {API}#update)"),
        ("(spec sections 1-7)", "(docs/service/api-contract.md)"),
        ("design.md sections 2-3", "docs/design.md#the-job, docs/design.md#scheduling"),
        ("design.md\nsection 3: a", "docs/design.md#scheduling: a"),
        ("Spec 3.5, S3", "docs/service/api-contract.md#storageconfig, S3"),
        ("(spec 7, code 50)", "(docs/service/api-contract.md#stop, code 50)"),
        ("What section 14.8 lists", "What docs/service/api-contract.md#validation lists"),
        ("spec 99.1 and the job spec", "spec 99.1 and the job spec"),  # unknown: left alone
        ("the spec's ``callback`` field", "the spec's ``callback`` field"),
        ("status 4/5 after 1.5 s", "status 4/5 after 1.5 s"),
    ],
)
def test_citations_become_doc_links(text: str, expected: str) -> None:
    new = tool.rewrite_text(text, tool.plain, bare=False)
    assert new == expected
    assert tool.rewrite_text(new, tool.plain, bare=False) == new  # idempotent


def test_bare_section_numbers_only_where_the_file_says_so() -> None:
    source = f'"""Doc.\n\n{tool.BARE_MARKER}\n"""\n'
    source += "X = 17  # 3.5: vendors, not 17 or 1.5 s\n"
    new = tool.rewrite_python(source)
    assert "X = 17  # docs/service/api-contract.md#storageconfig: vendors, not 17 or 1.5 s" in new
    plain = "X = 17  # 3.5: vendors\n"
    assert tool.rewrite_python(plain) == plain


def test_markdown_citations_become_relative_links() -> None:
    new = tool.rewrite_markdown("rotate (spec 11.1). And", "docs/operations.md")
    assert new == "rotate ([ncs: transport](service/ncs.md#transport)). And"
    assert tool.rewrite_markdown(new, "docs/operations.md") == new


def _code_only(source: str) -> str:
    tree = ast.parse(source)
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        first = body[0] if isinstance(body, list) and body else None
        if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant):
            first.value.value = ""
    return ast.dump(tree)


SAMPLE = '''\
"""A module whose docstring cites a section of the old spec in a line that is long (spec 10.5).
Second line of the same paragraph goes on here.

- a bullet citing spec 3.2 / 5 whose text runs on long enough to need wrapping after the rewrite
"""

LIMIT = {"spec 4.3": 1}  # code strings are never touched, only this comment: spec 4.3, 10.5 ok


def f(a: int) -> int:
    """One line (spec 9.2)."""
    # -- a ruler citing spec 1.1 ---------------------------------------------------------------
    return (
        a  # a trailing comment inside brackets that cites spec 10.1 and spec 11.3 at length
        + 1
    )
'''


def test_python_rewrite_touches_only_comments_and_docstrings_and_keeps_lines_short() -> None:
    new = tool.rewrite_python(SAMPLE)
    assert _code_only(new) == _code_only(SAMPLE)  # the code itself is unchanged
    assert '{"spec 4.3": 1}' in new
    assert "spec 4.3, 10.5" not in new and "spec 9.2" not in new and "spec 1.1" not in new
    long_lines = [line for line in new.splitlines() if len(line) > tool.MAX_LINE]
    assert not long_lines
    assert "# -- a ruler citing docs/service/api-contract.md#endpoints ---" in new
    assert tool.rewrite_python(new) == new
    compile(new, "sample", "exec")


def test_lone_section_numbers_in_parentheses_in_a_module_that_cites_the_service() -> None:
    cites = '"""Errors (docs/service/errors.md).\n\nGateway bodies (8.1)."""\nX = (1.5)  # (9.3)\n'
    new = tool.rewrite_python(cites)
    assert "Gateway bodies (docs/service/errors.md#body-shapes)." in new
    assert "X = (1.5)  # (docs/service/files.md#slicing)" in new
    unrelated = '"""Timing."""\nX = 1  # (9.3)\n'
    assert tool.rewrite_python(unrelated) == unrelated
