"""The review page's diff rendering: jobs.diffview against real git output, and the two template
partials rendered with hostile file names and file contents. No database."""

from __future__ import annotations

import dataclasses
import os
import subprocess
from collections.abc import Callable
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest
from django.template.loader import render_to_string

from jobs import diffview, remotes, workspace
from jobs.diffview import LARGE_FILE_LINES, DiffFile, DiffLine, Hunk, TreeNode
from tests.test_workspace import PLAIN_GIT_ENV

BRANCH = "agenthub/difftest/1"
FILE_URL = "/jobs/abc123/diff/file"
SCRIPT = "<script>alert(1)</script>"
IMG = "<img src=x onerror=alert(1)>"


# --- helpers ---------------------------------------------------------------------------------


def git(cwd: Path, *args: str) -> None:
    subprocess.run(["git", *args], cwd=cwd, env=PLAIN_GIT_ENV, check=True, capture_output=True)


def write(root: Path, files: dict[str, str | bytes]) -> None:
    for name, content in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content)


def real_diff(
    tmp_path: Path, before: dict[str, str | bytes], change: Callable[[Path], None]
) -> workspace.Diff:
    """What an attempt stores: a source repository with `before`, a store, an agent workspace
    changed by `change`, its snapshot, and the diff the service layer saves."""
    source = tmp_path / "source"
    source.mkdir()
    git(source, "init", "-q", "-b", "main")
    write(source, before)
    git(source, "add", "-A")
    git(source, "commit", "-q", "--allow-empty", "-m", "base")
    store = tmp_path / "store.git"
    remotes.create_store(str(source), store)
    base = workspace.resolve_commit(store, "main")
    agent_workspace = tmp_path / "workspace"
    workspace.prepare_workspace(store, base, BRANCH, agent_workspace)
    change(agent_workspace)
    index = tmp_path / "snapshot.index"
    commit = workspace.snapshot(store, agent_workspace, base, BRANCH, "agent", index_file=index)
    assert commit is not None
    return workspace.diff(store, base, commit)


def stats(result: workspace.Diff) -> list[dict[str, Any]]:
    """Attempt.files as the service layer stores it."""
    return [dataclasses.asdict(stat) for stat in result.files]


def by_path(files: list[DiffFile]) -> dict[str, DiffFile]:
    return {diff_file.path: diff_file for diff_file in files}


def lines(diff_file: DiffFile) -> list[tuple[str, int | None, int | None, str]]:
    return [
        (line.kind, line.old_no, line.new_no, line.text)
        for hunk in diff_file.hunks
        for line in hunk.lines
    ]


def new_file_patch(path: str, body: list[str]) -> str:
    quoted = f"b/{path}"
    return (
        f"diff --git a/{path} {quoted}\nnew file mode 100644\nindex 0000000..1111111\n"
        f"--- /dev/null\n+++ {quoted}\n@@ -0,0 +1,{len(body)} @@\n"
        + "".join(f"+{text}\n" for text in body)
    )


def render_page(files: list[DiffFile]) -> str:
    context = {"files": files, "tree": diffview.file_tree(files), "diff_file_url": FILE_URL}
    return render_to_string("jobs/_diff.html", context)


class Markup(HTMLParser):
    """Every element and attribute a browser would build from the HTML."""

    def __init__(self, html: str) -> None:
        super().__init__()
        self.tags: list[str] = []
        self.attributes: list[tuple[str, str | None]] = []
        self.feed(html)
        self.close()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        self.attributes.extend(attrs)


def assert_only_our_markup(html: str) -> None:
    markup = Markup(html)
    assert not {"script", "img", "b", "style", "iframe"} & set(markup.tags)
    names = {name for name, _ in markup.attributes}
    assert not [name for name in names if name.startswith("on")]
    assert "style" not in names


@pytest.fixture
def changed(tmp_path: Path) -> workspace.Diff:
    """Added, modified, deleted, renamed-with-edits and binary files, from real git."""

    def change(root: Path) -> None:
        write(root, {"src/app/new.py": "def hello():\n    return 1\n"})
        write(root, {"src/app/views.py": "import os\nx = 2\ny = 3\nz = 4\n"})
        (root / "old.txt").unlink()
        (root / "docs/guide.md").rename(root / "docs/manual.md")
        write(root, {"docs/manual.md": "one\ntwo\nTHREE\nfour\nfive\nsix\n"})
        write(root, {"logo.png": b"\x89PNG\x00\x02\x03"})

    before: dict[str, str | bytes] = {
        "src/app/views.py": "import os\nx = 1\ny = 3\n",
        "old.txt": "gone\n",
        "docs/guide.md": "one\ntwo\nthree\nfour\nfive\nsix\n",
        "logo.png": b"\x89PNG\x00\x01",
    }
    return real_diff(tmp_path, before, change)


# --- parsing real git output -----------------------------------------------------------------


def test_it_reads_added_modified_deleted_renamed_and_binary_files(
    changed: workspace.Diff,
) -> None:
    files = by_path(diffview.parse_patch(changed.patch, stats(changed)))
    assert set(files) == {
        "src/app/new.py",
        "src/app/views.py",
        "old.txt",
        "docs/manual.md",
        "logo.png",
    }
    assert files["src/app/new.py"].status == "added"
    assert files["src/app/views.py"].status == "modified"
    assert files["old.txt"].status == "deleted"
    assert lines(files["old.txt"]) == [("del", 1, None, "gone")]
    renamed = files["docs/manual.md"]
    assert (renamed.status, renamed.old_path) == ("renamed", "docs/guide.md")
    assert [line.kind for line in renamed.hunks[0].lines if line.kind != "context"] == [
        "del",
        "add",
    ]
    binary = files["logo.png"]
    assert binary.binary and binary.hunks == [] and binary.line_count == 0


def test_it_agrees_with_the_stats_without_being_given_them(changed: workspace.Diff) -> None:
    from_header = diffview.parse_patch(changed.patch)
    from_stats = diffview.parse_patch(changed.patch, stats(changed))
    summary = [
        (f.path, f.old_path, f.status, f.added, f.deleted, f.binary, f.anchor) for f in from_header
    ]
    assert summary == [
        (f.path, f.old_path, f.status, f.added, f.deleted, f.binary, f.anchor) for f in from_stats
    ]


def test_it_numbers_lines_on_both_sides(tmp_path: Path) -> None:
    before = "".join(f"line {n}\n" for n in range(1, 21))
    after = before.replace("line 3\n", "").replace("line 15\n", "line 15\nextra a\nextra b\n")
    result = real_diff(tmp_path, {"f.txt": before}, lambda root: write(root, {"f.txt": after}))
    (diff_file,) = diffview.parse_patch(result.patch, stats(result))
    first, second = diff_file.hunks
    assert first.header == "@@ -1,6 +1,5 @@"
    assert lines(diff_file)[:4] == [
        ("context", 1, 1, "line 1"),
        ("context", 2, 2, "line 2"),
        ("del", 3, None, "line 3"),
        ("context", 4, 3, "line 4"),
    ]
    assert [(line.kind, line.old_no, line.new_no) for line in second.lines][2:6] == [
        ("context", 15, 14),
        ("add", None, 15),
        ("add", None, 16),
        ("context", 16, 17),
    ]
    assert (diff_file.added, diff_file.deleted, diff_file.line_count) == (2, 1, 14)


def test_it_reads_no_newline_at_end_of_file_as_a_note(tmp_path: Path) -> None:
    result = real_diff(tmp_path, {"f.txt": "a\nb\n"}, lambda root: write(root, {"f.txt": "a\nc"}))
    (diff_file,) = diffview.parse_patch(result.patch, stats(result))
    assert lines(diff_file) == [
        ("context", 1, 1, "a"),
        ("del", 2, None, "b"),
        ("add", None, 2, "c"),
        ("note", None, None, "No newline at end of file"),
    ]


def test_it_reads_a_mode_change_as_a_file_without_hunks(tmp_path: Path) -> None:
    result = real_diff(
        tmp_path, {"run.sh": "echo hi\n"}, lambda root: (root / "run.sh").chmod(0o755)
    )
    (diff_file,) = diffview.parse_patch(result.patch, stats(result))
    assert (diff_file.status, diff_file.hunks, diff_file.mode_changed) == ("modified", [], True)
    assert (diff_file.old_mode, diff_file.new_mode) == ("100644", "100755")
    assert "mode 100644 → 100755" in render_page([diff_file])


def test_it_counts_a_type_change_once(tmp_path: Path) -> None:
    def change(root: Path) -> None:
        (root / "link").unlink()
        (root / "link").symlink_to("target")

    result = real_diff(tmp_path, {"link": "was a file\n"}, change)
    for files in (stats(result), None):
        (diff_file,) = diffview.parse_patch(result.patch, files)
        assert diff_file.status == "type-changed"
        assert [line.kind for line in lines_of(diff_file)] == ["del", "add", "note"]
        assert (diff_file.old_mode, diff_file.new_mode) == ("100644", "120000")


def lines_of(diff_file: DiffFile) -> list[DiffLine]:
    return [line for hunk in diff_file.hunks for line in hunk.lines]


def test_it_takes_exact_names_from_the_stats_and_unquotes_them_from_the_header(
    tmp_path: Path,
) -> None:
    names = ['say "hi".py', "new\nline.py", "café.py", "tab\there.txt", "with space.txt"]
    result = real_diff(tmp_path, {}, lambda root: write(root, {n: "x\n" for n in names}))
    assert '"b/new\\nline.py"' in result.patch  # git quotes it in the header
    from_stats = [f.path for f in diffview.parse_patch(result.patch, stats(result))]
    from_header = [f.path for f in diffview.parse_patch(result.patch)]
    assert sorted(from_stats) == sorted(names)
    assert from_header == from_stats


def test_it_unquotes_octal_escapes_and_renames_between_quoted_and_plain_names() -> None:
    patch = (
        'diff --git a/plain.txt "b/caf\\303\\251 \\"x\\".txt"\n'
        "similarity index 100%\n"
        "rename from plain.txt\n"
        'rename to "caf\\303\\251 \\"x\\".txt"\n'
        'diff --git "a/d\\tir/x" "b/d\\tir/x"\n'
        "old mode 100644\nnew mode 100755\n"
    )
    renamed, mode_changed = diffview.parse_patch(patch)
    assert (renamed.path, renamed.old_path, renamed.status) == (
        'café "x".txt',
        "plain.txt",
        "renamed",
    )
    assert mode_changed.path == "d\tir/x"


def test_stats_without_a_section_in_the_patch_are_listed_without_hunks() -> None:
    files = [
        {
            "path": "a.py",
            "old_path": None,
            "status": "added",
            "added": 1,
            "deleted": 0,
            "binary": False,
        },
        {
            "path": "b.py",
            "old_path": None,
            "status": "added",
            "added": 3,
            "deleted": 0,
            "binary": False,
        },
    ]
    (a, b) = diffview.parse_patch(new_file_patch("a.py", ["x = 1"]), files)
    assert (a.path, len(a.hunks)) == ("a.py", 1)
    assert (b.path, b.hunks, b.added) == ("b.py", [], 3)
    assert "Diff not available" in render_to_string("jobs/_diff_file.html", {"file": b})


@pytest.mark.parametrize(
    "patch",
    [
        "",
        "not a diff at all\n\x00\x01",
        "diff --git \n@@ -1 +1 @@\n-a\n+b\n",
        "diff --git a/x b/x\n@@ -1,5 +1,5 @@\n-a\n",  # counts promise more lines than follow
        "diff --git a/x b/x\n@@ -1 +1 @@\n-a\n-b\n+c\n+d\n\\ No newline\n",
        "diff --git a/x b/x\n@@ -99999999999999999999,2 +1 @@\n garbage\n\n",
        'diff --git "a/unterminated b/x\n--- "a/also\n+++ b/\n',
        "diff --git a/x b/x\nBinary files a/x and b/x differ\n@@ -1 +1 @@\n-a\n+b\n",
        "@@ -1 +1 @@\n-a\n+b\n",
        "diff --git a/x b/x\n@@ garbage @@\n+b\n",
        "\\ No newline at end of file\n",
        "diff --git a/x b/x\r\n@@ -1 +1 @@\r\n-a\r\n+b\r\n",
    ],
)
def test_malformed_patch_text_does_not_raise(patch: str) -> None:
    files = diffview.parse_patch(patch)
    assert_only_our_markup(render_page(files))
    diffview.parse_patch(patch, [{"path": "x", "status": "modified"}])


def test_a_content_line_that_looks_like_a_header_stays_content() -> None:
    patch = new_file_patch("notes.txt", ["diff --git a/evil b/evil", "@@ -1 +1 @@", "-- a"])
    (diff_file,) = diffview.parse_patch(patch)
    assert [line.text for line in lines_of(diff_file)] == [
        "diff --git a/evil b/evil",
        "@@ -1 +1 @@",
        "-- a",
    ]


def test_anchors_are_stable_and_unique() -> None:
    patch = new_file_patch("a.py", ["x"]) + new_file_patch("a.py", ["y"])
    first, second = diffview.parse_patch(patch)
    assert first.anchor == diffview.file_anchor("a.py") == diffview.parse_patch(patch)[0].anchor
    assert first.anchor.startswith("f-") and second.anchor != first.anchor


# --- split view ------------------------------------------------------------------------------


def line(kind: str, text: str, old: int | None = None, new: int | None = None) -> DiffLine:
    return DiffLine(kind, old, new, text, "f.txt")


def texts(rows: list[tuple[DiffLine | None, DiffLine | None]]) -> list[tuple[str, str]]:
    return [(left.text if left else "", right.text if right else "") for left, right in rows]


def test_split_rows_pairs_each_run_of_deletions_with_the_following_additions() -> None:
    hunk = Hunk(
        "@@ -1,5 +1,4 @@",
        [
            line("context", "a", 1, 1),
            line("del", "b", 2),
            line("del", "c", 3),
            line("del", "d", 4),
            line("add", "B", None, 2),
            line("add", "C", None, 3),
            line("context", "e", 5, 4),
            line("add", "F", None, 5),
        ],
    )
    assert texts(diffview.split_rows(hunk)) == [
        ("a", "a"),
        ("b", "B"),
        ("c", "C"),
        ("d", ""),
        ("e", "e"),
        ("", "F"),
    ]
    assert hunk.rows == diffview.split_rows(hunk)


def test_split_rows_start_a_new_pair_when_deletions_follow_additions() -> None:
    hunk = Hunk(
        "@@",
        [
            line("del", "a", 1),
            line("add", "A", None, 1),
            line("del", "b", 2),
            line("add", "B", None, 2),
        ],
    )
    assert texts(diffview.split_rows(hunk)) == [("a", "A"), ("b", "B")]


def test_split_rows_keep_a_no_newline_note_on_its_lines_side() -> None:
    hunk = Hunk(
        "@@",
        [
            line("del", "a", 1),
            line("note", "No newline at end of file"),
            line("add", "A", None, 1),
        ],
    )
    assert texts(diffview.split_rows(hunk)) == [("a", "A"), ("No newline at end of file", "")]


# --- file tree -------------------------------------------------------------------------------


def stat_file(path: str, added: int = 1, deleted: int = 0) -> DiffFile:
    return DiffFile(path, None, "modified", added, deleted, False, [], 0, "f-x", False)


def shape(nodes: list[TreeNode]) -> list[Any]:
    return [
        (node.name, node.added, node.deleted, shape(node.children))
        if node.file is None
        else node.name
        for node in nodes
    ]


def test_file_tree_lists_directories_first_then_files_each_sorted() -> None:
    files = [stat_file(p) for p in ["zeta.py", "b/x.py", "Alpha.py", "a/y.py", "a/x.py"]]
    assert shape(diffview.file_tree(files)) == [
        ("a", 2, 0, ["x.py", "y.py"]),
        ("b", 1, 0, ["x.py"]),
        "Alpha.py",
        "zeta.py",
    ]


def test_file_tree_sums_directory_totals() -> None:
    files = [stat_file("src/a.py", 3, 1), stat_file("src/lib/b.py", 5, 2), stat_file("c.py", 1, 1)]
    (src, _) = diffview.file_tree(files)
    assert (src.path, src.added, src.deleted) == ("src", 8, 3)
    assert (src.children[0].path, src.children[0].added) == ("src/lib", 5)


def test_file_tree_collapses_single_child_directory_chains() -> None:
    files = [stat_file("src/app/x.py"), stat_file("src/app/deep/er/y.py")]
    (node,) = diffview.file_tree(files)
    assert (node.name, node.path) == ("src/app", "src/app")
    assert shape(node.children) == [("deep/er", 1, 0, ["y.py"]), "x.py"]
    assert node.children[0].path == "src/app/deep/er"
    assert node.children[1].file is files[0]


# --- highlighting ----------------------------------------------------------------------------


def test_highlight_line_yields_pygments_spans_for_a_python_line() -> None:
    html = diffview.highlight_line("pkg/mod.py", "def f(x):  # note")
    assert '<span class="k">def</span>' in html
    assert '<span class="c1"># note</span>' in html


def test_highlight_line_never_guesses_the_lexer_from_the_content() -> None:
    assert diffview.highlight_line("NOTES", "#!/usr/bin/env python") == "#!/usr/bin/env python"


def test_highlight_line_picks_lexers_by_whole_file_names() -> None:
    assert "<span" in diffview.highlight_line("Makefile", "all: build")


def test_highlight_line_escapes_markup_in_the_line() -> None:
    for path in ("x.py", "x.html", "x.unknown"):
        html = diffview.highlight_line(path, SCRIPT + IMG)
        assert_only_our_markup(html)
        assert "&lt;" in html


def test_invisible_and_bidi_characters_are_shown_visibly() -> None:
    html = diffview.highlight_line("x.py", 'access = "user\u202e \u2066// admin\u2069"\r')
    assert "\u202e" not in html and "\r" not in html
    assert 'title="U+202E RIGHT-TO-LEFT OVERRIDE"' in html
    assert "\u240d" in html  # ␍, the carriage return
    assert diffview.visible_name("a\u202egnp.py") == "a\\u202egnp.py"
    assert diffview.visible_name("new\nline\t\\x") == "new\\nline\\t\\\\x"


def test_a_very_long_line_is_escaped_without_highlighting() -> None:
    text = "x = '<b>'" + " " * diffview.MAX_HIGHLIGHT_CHARS
    assert diffview.highlight_line("x.py", text) == text.replace("<", "&lt;").replace(">", "&gt;")


# --- escaping in the module output and the templates -----------------------------------------


@pytest.fixture
def hostile(tmp_path: Path) -> list[DiffFile]:
    """Real git output for files whose names and lines are markup, and a name with a newline."""
    names = ["<b>x</b>.py", "new\nline.py", "page.html"]
    body = f"{SCRIPT}\n{IMG}\n"
    result = real_diff(tmp_path, {}, lambda root: write(root, {n: body for n in names}))
    return diffview.parse_patch(result.patch, stats(result))


def test_hostile_lines_are_escaped_in_the_module_output(hostile: list[DiffFile]) -> None:
    for diff_file in hostile:
        for diff_line in lines_of(diff_file):
            assert_only_our_markup(diff_line.html)
            assert "&lt;" in diff_line.html


def test_hostile_lines_and_names_are_escaped_in_the_rendered_page(hostile: list[DiffFile]) -> None:
    html = render_page(hostile)
    assert_only_our_markup(html)
    assert "&lt;b&gt;x&lt;/b&gt;.py" in html
    assert "<b>x" not in html


def test_hostile_lines_and_names_are_escaped_in_a_loaded_file(hostile: list[DiffFile]) -> None:
    for diff_file in hostile:
        assert_only_our_markup(render_to_string("jobs/_diff_file.html", {"file": diff_file}))


def test_a_newline_in_a_file_name_renders_visibly(hostile: list[DiffFile]) -> None:
    html = render_page(hostile)
    assert "new\\nline.py" in html
    assert "new\nline" not in html


# --- templates -------------------------------------------------------------------------------


def large_file(tmp_path: Path, path: str = "big.py") -> DiffFile:
    body = "".join(f"n = {n}\n" for n in range(LARGE_FILE_LINES + 1))
    result = real_diff(tmp_path, {}, lambda root: write(root, {path: body}))
    (diff_file,) = diffview.parse_patch(result.patch, stats(result))
    return diff_file


def test_a_large_file_is_marked_and_rendered_as_a_load_button_with_its_url(
    tmp_path: Path,
) -> None:
    diff_file = large_file(tmp_path, "dir/big file&\n.py")
    assert diff_file.large and diff_file.line_count == LARGE_FILE_LINES + 1
    html = render_page([diff_file])
    assert (
        f'<button type="button" class="load-file" hx-get="{FILE_URL}?path=dir/big%20file%26%0A.py"'
        ' hx-target="closest .diff-file" hx-swap="outerHTML">Load 401 lines</button>'
    ) in html
    assert "n = 1" not in html


def test_a_collapsed_large_file_is_never_highlighted(tmp_path: Path) -> None:
    diff_file = large_file(tmp_path)
    render_page([diff_file])
    assert all("html" not in vars(diff_line) for diff_line in lines_of(diff_file))


def test_a_file_of_exactly_the_limit_is_not_large() -> None:
    patch = new_file_patch("x.py", ["y"] * LARGE_FILE_LINES)
    (diff_file,) = diffview.parse_patch(patch)
    assert not diff_file.large


def test_a_loaded_large_file_is_one_section_with_every_line(tmp_path: Path) -> None:
    diff_file = large_file(tmp_path)
    html = render_to_string("jobs/_diff_file.html", {"file": diff_file}).strip()
    assert html.startswith(
        f'<section class="diff-file diff-file-added" id="{diff_file.anchor}" data-path="'
    )
    assert html.endswith("</section>")
    assert html.count("<section") == 1
    assert html.count('data-n="401"') == 2  # unified and split
    assert "load-file" not in html


def test_a_binary_file_is_named_but_not_shown(changed: workspace.Diff) -> None:
    files = diffview.parse_patch(changed.patch, stats(changed))
    html = render_page(files)
    section = html[html.index('id="{}"'.format(by_path(files)["logo.png"].anchor)) :]
    assert "logo.png" in section[:600]
    assert "Binary file — not shown" in section[:1200]


def test_the_page_renders_tree_sections_and_both_views(changed: workspace.Diff) -> None:
    files = diffview.parse_patch(changed.patch, stats(changed))
    html = render_page(files)
    for diff_file in files:
        assert f'href="#{diff_file.anchor}"' in html
        assert f'id="{diff_file.anchor}"' in html
    assert html.count('class="diff-table diff-unified"') == 4  # all but the binary file
    assert html.count('class="diff-table diff-split"') == 4
    assert '<span class="diff-old-path">docs/guide.md</span> → ' in html
    assert '<tr class="add"><td class="num"></td><td class="num" data-n="1"></td>' in html
    assert '<span class="diff-tree-name">src/app/</span>' in html  # collapsed directory
    assert_only_our_markup(html)


def test_the_view_toggle_is_two_radios_before_the_diff_layout(changed: workspace.Diff) -> None:
    html = render_page(diffview.parse_patch(changed.patch, stats(changed)))
    unified = html.index('id="diff-view-unified"')
    split = html.index('id="diff-view-split"')
    assert unified < split < html.index('class="diff-toolbar"') < html.index('class="diff-layout"')
    assert '<label class="diff-view-label diff-view-label-split" for="diff-view-split">' in html
    css = (Path(__file__).resolve().parent.parent / "static/agenthub/diff.css").read_text()
    assert ".diff-view-split:checked ~ .diff-layout .diff-unified { display: none; }" in css
    assert ".diff-view-split:checked ~ .diff-layout .diff-split { display: table; }" in css
    assert ".hl .k {" in css


def test_an_empty_diff_says_so() -> None:
    assert "No changes." in render_page([])


def test_a_name_that_is_not_utf8_reads_the_same_from_the_header_and_the_stats(
    tmp_path: Path,
) -> None:
    def change(root: Path) -> None:
        (root / os.fsdecode(b"bad\xff\xe2\x82.txt")).write_text("x\n")

    result = real_diff(tmp_path, {}, change)
    (from_stats,) = diffview.parse_patch(result.patch, stats(result))
    (from_header,) = diffview.parse_patch(result.patch)
    assert from_stats.path == from_header.path == "bad\ufffd\ufffd.txt"
