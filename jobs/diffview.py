"""The review page's diff: git's patch text parsed into files, hunks and lines for the templates.

Plain data in, plain data out; no ORM. Everything here is untrusted input (file names, diff lines,
hunk headers all come from the agent's commit), so markup is only ever built by Pygments (which
escapes token text) or by `format_html`/`escape`. Characters that would be invisible or would
reorder text (control, format and bidi characters, as in the "Trojan Source" attack) are shown
visibly, in names and in code, so a reviewer sees exactly what will be merged.

Used by the review view (`templates/jobs/_diff.html`) and by the view that loads one large file
(`templates/jobs/_diff_file.html`).
"""

from __future__ import annotations

import hashlib
import posixpath
import re
import unicodedata
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import cached_property, lru_cache
from typing import Any

from django.utils.html import escape, format_html
from django.utils.safestring import SafeString, mark_safe
from pygments import highlight
from pygments.formatters import HtmlFormatter
from pygments.lexer import Lexer
from pygments.lexers import TextLexer, get_lexer_for_filename
from pygments.util import ClassNotFound

LARGE_FILE_LINES = 400
# Longer lines are shown escaped but not highlighted: Pygments time grows with the line, and a
# minified bundle gains nothing from colour.
MAX_HIGHLIGHT_CHARS = 2000

_HUNK_HEADER = re.compile(r"@@ -(\d+)(?:,(\d+))? \+(\d+)(?:,(\d+))? @@")
_FORMATTER = HtmlFormatter(nowrap=True)
# Stands in for each special character while Pygments runs, so the lexer never sees a line
# break (it turns "\r" and friends into "\n") and the markup can be put back afterwards.
# A Unicode noncharacter, itself treated as special, so text can never contain a bare one.
_PLACEHOLDER = "\ufdd0"
_C_ESCAPES = {"a": 7, "b": 8, "t": 9, "n": 10, "v": 11, "f": 12, "r": 13, '"': 34, "\\": 92}
_NAME_ESCAPES = {"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"}


@dataclass
class DiffLine:
    """One line of a hunk. `html` is highlighted on first use, so collapsed files cost nothing."""

    kind: str  # 'context' | 'add' | 'del' | 'note' ('\ No newline at end of file')
    old_no: int | None
    new_no: int | None
    text: str  # without the leading ' ', '+', '-' or '\ '
    path: str  # picks the lexer

    @cached_property
    def html(self) -> SafeString:
        if self.kind == "note":
            return visible_html(self.text)
        return highlight_line(self.path, self.text)


@dataclass
class Hunk:
    header: str
    lines: list[DiffLine] = field(default_factory=list)

    @cached_property
    def header_html(self) -> SafeString:
        return visible_html(self.header)

    @property
    def rows(self) -> list[tuple[DiffLine | None, DiffLine | None]]:
        """The split view's rows; templates cannot call split_rows themselves."""
        return split_rows(self)


@dataclass
class DiffFile:
    path: str
    old_path: str | None
    status: str  # as in Attempt.files: added, modified, deleted, renamed, type-changed (copied)
    added: int
    deleted: int
    binary: bool
    hunks: list[Hunk]
    line_count: int
    anchor: str
    large: bool
    old_mode: str | None = None
    new_mode: str | None = None

    @property
    def display_path(self) -> str:
        return visible_name(self.path)

    @property
    def display_old_path(self) -> str:
        return visible_name(self.old_path or "")

    @property
    def mode_changed(self) -> bool:
        return bool(self.old_mode and self.new_mode and self.old_mode != self.new_mode)


@dataclass
class TreeNode:
    name: str  # may hold several components when a directory chain is collapsed: 'src/app'
    path: str
    children: list[TreeNode]
    file: DiffFile | None
    added: int
    deleted: int

    @property
    def display_name(self) -> str:
        return visible_name(self.name)


# --- parsing ---------------------------------------------------------------------------------


@dataclass
class _Section:
    """One `diff --git` section as read, before it is matched with its stats."""

    header_old: str | None = None
    header_new: str | None = None
    old_path: str | None = None  # from `rename from`, `copy from` or `--- a/...`
    new_path: str | None = None
    status: str = "modified"
    binary: bool = False
    old_mode: str | None = None
    new_mode: str | None = None
    hunks: list[Hunk] = field(default_factory=list)

    @property
    def path(self) -> str | None:
        new = self.new_path or self.header_new
        old = self.old_path or self.header_old
        return old if self.status == "deleted" else (new or old)

    @property
    def source_path(self) -> str | None:
        return self.old_path or self.header_old


def parse_patch(patch: str, files: list[dict[str, Any]] | None = None) -> list[DiffFile]:
    """The files of `git diff` output, in order.

    Names come from `files` (Attempt.files) when given: they are exact, while the patch header
    may be ambiguous (unquoted names with spaces). Text before the first `diff --git` and lines
    that fit nowhere are skipped; this never raises on malformed patch text. A file in `files`
    that has no section in the patch is still listed, without hunks.
    """
    sections = _merge_type_changes(list(_sections(patch.split("\n"))))
    stats = list(files) if files is not None else None
    result = _match(sections, stats) if stats is not None else [_build(s, None) for s in sections]
    _dedupe_anchors(result)
    return result


def _sections(lines: list[str]) -> Iterator[_Section]:
    section: _Section | None = None
    i = 0
    while i < len(lines):
        line = lines[i]
        if line.startswith("diff --git "):
            if section is not None:
                yield section
            section = _Section()
            section.header_old, section.header_new = _header_paths(line[len("diff --git ") :])
            i += 1
        elif section is None:
            i += 1  # text before the first section
        elif line.startswith("@@ ") and (match := _HUNK_HEADER.match(line)):
            hunk, i = _read_hunk(lines, i, match, section)
            section.hunks.append(hunk)
        else:
            _read_extended_header(section, line)
            i += 1
    if section is not None:
        yield section


def _read_hunk(
    lines: list[str], i: int, match: re.Match[str], section: _Section
) -> tuple[Hunk, int]:
    """Read one hunk by its line counts, so a content line that looks like a header is content."""
    old_no, new_no = int(match[1]), int(match[3])
    old_left = 1 if match[2] is None else int(match[2])
    new_left = 1 if match[4] is None else int(match[4])
    path = section.path or ""
    hunk = Hunk(header=lines[i])
    i += 1
    while i < len(lines):
        line = lines[i]
        prefix, text = line[:1], line[1:]
        if prefix == "\\":
            note = line[2:] if line[1:2] == " " else text
            hunk.lines.append(DiffLine("note", None, None, note, path))
        elif old_left <= 0 and new_left <= 0:
            break
        elif prefix == "-" and old_left > 0:
            hunk.lines.append(DiffLine("del", old_no, None, text, path))
            old_no, old_left = old_no + 1, old_left - 1
        elif prefix == "+" and new_left > 0:
            hunk.lines.append(DiffLine("add", None, new_no, text, path))
            new_no, new_left = new_no + 1, new_left - 1
        elif prefix in (" ", "") and old_left > 0 and new_left > 0:
            # An empty line is a context line whose space was stripped by some tool on the way.
            hunk.lines.append(DiffLine("context", old_no, new_no, text, path))
            old_no, new_no = old_no + 1, new_no + 1
            old_left, new_left = old_left - 1, new_left - 1
        else:
            break  # the counts and the lines disagree: the patch is damaged, stop the hunk here
        i += 1
    return hunk, i


def _read_extended_header(section: _Section, line: str) -> None:
    key, _, value = line.partition(" ")
    if line.startswith(("new file mode ", "deleted file mode ")):
        section.status = "added" if key == "new" else "deleted"
        mode = line.rsplit(" ", 1)[-1]
        if key == "new":
            section.new_mode = mode
        else:
            section.old_mode = mode
    elif line.startswith(("old mode ", "new mode ")):
        mode = line.rsplit(" ", 1)[-1]
        if key == "old":
            section.old_mode = mode
        else:
            section.new_mode = mode
    elif line.startswith(("rename from ", "copy from ")):
        section.status = "renamed" if key == "rename" else "copied"
        section.old_path = _unquote_or_raw(line.split(" ", 2)[2])
    elif line.startswith(("rename to ", "copy to ")):
        section.new_path = _unquote_or_raw(line.split(" ", 2)[2])
    elif line.startswith("--- ") and section.old_path is None:
        section.old_path = _marker_path(value, "a/")
    elif line.startswith("+++ ") and section.new_path is None:
        section.new_path = _marker_path(value, "b/")
    elif line.startswith(("Binary files ", "GIT binary patch")):
        section.binary = True


def _marker_path(value: str, prefix: str) -> str | None:
    """The path of a `--- a/x` or `+++ b/x` line; git appends a tab when the name has a space."""
    if value == "/dev/null":
        return None
    name = _unquote_or_raw(value.removesuffix("\t"))
    return name.removeprefix(prefix)


def _header_paths(rest: str) -> tuple[str | None, str | None]:
    """The two names of `diff --git a/x b/y`, or None where they cannot be told apart."""
    if rest.startswith('"'):
        first = _unquote(rest)
        if first is None:
            return None, None
        old, end = first
        second = rest[end + 1 :] if rest[end : end + 1] == " " else ""
        new = _unquote_or_raw(second) if second else None
    elif rest.endswith('"') and ' "' in rest:
        # An unquoted name never holds '"' (git would have quoted it), so the first ' "' splits.
        cut = rest.index(' "')
        old, new = rest[:cut], _unquote_or_raw(rest[cut + 1 :])
    else:
        # Both unquoted: equal names (all but renames) split at the middle space.
        middle = len(rest) // 2
        old, new = rest[:middle], rest[middle + 1 :]
        prefixed = old.startswith("a/") and new.startswith("b/") and old[2:] == new[2:]
        if rest[middle : middle + 1] != " " or not (prefixed or old == new):
            return None, None
    return old.removeprefix("a/"), (new.removeprefix("b/") if new is not None else None)


def _unquote_or_raw(text: str) -> str:
    unquoted = _unquote(text) if text.startswith('"') else None
    return unquoted[0] if unquoted is not None else text


def _unquote(text: str) -> tuple[str, int] | None:
    r"""Undo git's C-style quoting (`"caf\303\251 \"x\"\n"`) of the quoted name `text` starts
    with; returns the name and the index after its closing quote, or None if it never closes."""
    raw = bytearray()
    i = 1
    while i < len(text):
        char = text[i]
        if char == '"':
            return raw.decode("utf-8", errors="replace"), i + 1
        if char != "\\" or i + 1 == len(text):
            raw += char.encode("utf-8", errors="surrogatepass")
            i += 1
            continue
        escaped = text[i + 1]
        octal = text[i + 1 : i + 4]
        if len(octal) == 3 and all(c in "01234567" for c in octal):
            raw.append(int(octal, 8) & 0xFF)
            i += 4
        elif escaped in _C_ESCAPES:
            raw.append(_C_ESCAPES[escaped])
            i += 2
        else:
            raw += ("\\" + escaped).encode("utf-8", errors="surrogatepass")
            i += 2
    return None


def _merge_type_changes(sections: list[_Section]) -> list[_Section]:
    """Git shows a type change (file to symlink, say) as a deletion and an addition of one path;
    the stats count it once, as `type-changed`, and so do we."""
    merged: list[_Section] = []
    for section in sections:
        previous = merged[-1] if merged else None
        if (
            previous is not None
            and previous.status == "deleted"
            and section.status == "added"
            and previous.path is not None
            and previous.path == section.path
        ):
            previous.status = "type-changed"
            previous.new_mode = section.new_mode
            previous.new_path = section.new_path
            previous.binary = previous.binary or section.binary
            previous.hunks.extend(section.hunks)
        else:
            merged.append(section)
    return merged


def _match(sections: list[_Section], stats: list[dict[str, Any]]) -> list[DiffFile]:
    """Pair sections with stats. Both come from one `git diff` with the same options, so they are
    in the same order; names are checked, and a section without stats keeps its header's."""
    result: list[DiffFile] = []
    remaining = list(stats)
    for section in sections:
        index = next(
            (n for n, stat in enumerate(remaining) if _same_file(section, stat)),
            None,
        )
        if index is None:
            result.append(_build(section, None))
            continue
        # Stats skipped over had no section of their own: listed, without hunks.
        result.extend(_build(_Section(), stat) for stat in remaining[:index])
        result.append(_build(section, remaining[index]))
        remaining = remaining[index + 1 :]
    result.extend(_build(_Section(), stat) for stat in remaining)
    return result


def _same_file(section: _Section, stat: dict[str, Any]) -> bool:
    if section.path is None:
        return True  # the header could not be read; trust the order
    if section.path != stat["path"]:
        return False
    old = stat.get("old_path")
    return old is None or section.source_path in (None, old)


def _build(section: _Section, stat: dict[str, Any] | None) -> DiffFile:
    counted_added = sum(line.kind == "add" for hunk in section.hunks for line in hunk.lines)
    counted_deleted = sum(line.kind == "del" for hunk in section.hunks for line in hunk.lines)
    line_count = sum(len(hunk.lines) for hunk in section.hunks)
    if stat is not None:
        path = str(stat["path"])
        old_path = stat.get("old_path")
        status = str(stat.get("status") or section.status)
        added, deleted = int(stat.get("added") or 0), int(stat.get("deleted") or 0)
        binary = bool(stat.get("binary")) or section.binary
        for hunk in section.hunks:
            for line in hunk.lines:
                line.path = path  # the exact name picks the lexer
    else:
        path = section.path or ""
        renamed = section.status in ("renamed", "copied")
        old_path = section.source_path if renamed else None
        status, added, deleted = section.status, counted_added, counted_deleted
        binary = section.binary
    return DiffFile(
        path=path,
        old_path=old_path,
        status=status,
        added=added,
        deleted=deleted,
        binary=binary,
        hunks=[] if binary else section.hunks,
        line_count=0 if binary else line_count,
        anchor=file_anchor(path),
        large=not binary and line_count > LARGE_FILE_LINES,
        old_mode=section.old_mode,
        new_mode=section.new_mode,
    )


def file_anchor(path: str) -> str:
    """A stable HTML id for a file: the same path gets the same id on every page load."""
    digest = hashlib.sha1(path.encode("utf-8", "surrogatepass"), usedforsecurity=False)
    return "f-" + digest.hexdigest()[:10]


def _dedupe_anchors(files: list[DiffFile]) -> None:
    """Ids must be unique even if a damaged patch lists a path twice."""
    seen: set[str] = set()
    for diff_file in files:
        anchor, n = diff_file.anchor, 1
        while anchor in seen:
            n += 1
            anchor = f"{diff_file.anchor}-{n}"
        diff_file.anchor = anchor
        seen.add(anchor)


# --- side by side ------------------------------------------------------------------------------


def split_rows(hunk: Hunk) -> list[tuple[DiffLine | None, DiffLine | None]]:
    """Rows of the split view: each run of deletions beside the additions that follow it, context
    on both sides. A 'no newline' note stays on the side of the line it belongs to."""
    rows: list[tuple[DiffLine | None, DiffLine | None]] = []
    left: list[DiffLine] = []
    right: list[DiffLine] = []
    side = "context"

    def flush() -> None:
        for n in range(max(len(left), len(right))):
            rows.append((left[n] if n < len(left) else None, right[n] if n < len(right) else None))
        left.clear()
        right.clear()

    for line in hunk.lines:
        kind = side if line.kind == "note" else line.kind
        if kind == "del":
            if right:
                flush()  # a deletion after additions starts a new change
            left.append(line)
        elif kind == "add":
            right.append(line)
        else:
            flush()
            rows.append((line, line))
        if line.kind != "note":
            side = line.kind
    flush()
    return rows


# --- the file tree -----------------------------------------------------------------------------


def file_tree(files: list[DiffFile]) -> list[TreeNode]:
    """Files as a tree: directories first, then files, each sorted by name; directories carry
    their files' totals; a directory whose only child is a directory is shown as one node."""
    root = _Directory()
    for diff_file in files:
        *directories, name = diff_file.path.split("/")
        level = root
        for directory in directories:
            level = level.directories.setdefault(directory, _Directory())
        level.files.append((name, diff_file))
    return _tree_nodes(root, "")


@dataclass
class _Directory:
    directories: dict[str, _Directory] = field(default_factory=dict)
    files: list[tuple[str, DiffFile]] = field(default_factory=list)


def _tree_nodes(level: _Directory, parent: str) -> list[TreeNode]:
    nodes = []
    for name in sorted(level.directories, key=_sort_key):
        directory, path = level.directories[name], f"{parent}/{name}" if parent else name
        # Collapse `src` -> `app` into one `src/app` node while the chain holds no files.
        while len(directory.directories) == 1 and not directory.files:
            (child_name, directory), *_ = directory.directories.items()
            name, path = f"{name}/{child_name}", f"{path}/{child_name}"
        children = _tree_nodes(directory, path)
        added = sum(node.added for node in children)
        deleted = sum(node.deleted for node in children)
        nodes.append(TreeNode(name, path, children, None, added, deleted))
    for name, diff_file in sorted(level.files, key=lambda item: _sort_key(item[0])):
        nodes.append(
            TreeNode(name, diff_file.path, [], diff_file, diff_file.added, diff_file.deleted)
        )
    return nodes


def _sort_key(name: str) -> tuple[str, str]:
    return name.casefold(), name


# --- highlighting and visible special characters ---------------------------------------------


def highlight_line(path: str, text: str) -> SafeString:
    """One line as Pygments `<span class=...>` runs (style them under `.hl`), the lexer chosen
    from the file name only, never from the content."""
    specials = [char for char in text if _is_special(char)]
    source = "".join(_PLACEHOLDER if _is_special(char) else char for char in text)
    lexer = _lexer(posixpath.basename(path)) if len(text) <= MAX_HIGHLIGHT_CHARS else TextLexer()
    # Pygments escapes every token's text (&, <, >) and its own markup is spans with ASCII class
    # names, so the output is safe in element content, and a placeholder in it is always text.
    highlighted = highlight(source, lexer, _FORMATTER).removesuffix("\n")
    pieces = highlighted.split(_PLACEHOLDER)
    if len(pieces) != len(specials) + 1:  # a lexer dropped or added text; fall back to plain
        return visible_html(text)
    markup = [pieces[0]]
    for char, piece in zip(specials, pieces[1:], strict=True):
        markup += [_special_html(char), piece]
    # Safe: Pygments output (escaped, see above) joined with format_html output.
    return mark_safe("".join(markup))  # noqa: S308


def visible_html(text: str) -> SafeString:
    """`text` escaped, special characters shown as marked symbols; no highlighting."""
    markup = [_special_html(char) if _is_special(char) else escape(char) for char in text]
    # Safe: every piece is escape() or format_html() output.
    return mark_safe("".join(markup))  # noqa: S308


def visible_name(name: str) -> str:
    r"""A file name as plain text with nothing hidden: a newline shows as `\n`, a right-to-left
    override as `\u202e`. Templates escape the result like any other text."""
    return "".join(_name_char(char) for char in name)


def _name_char(char: str) -> str:
    if char in _NAME_ESCAPES:
        return _NAME_ESCAPES[char]
    if not _is_special(char):
        return char
    code = ord(char)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def _is_special(char: str) -> bool:
    """Control, format (bidi overrides, zero-width), line/paragraph separator, noncharacter.
    A tab is ordinary."""
    if char == "\t":
        return False
    return unicodedata.category(char) in ("Cc", "Cf", "Zl", "Zp") or "\ufdd0" <= char <= "\ufdef"


def _special_html(char: str) -> SafeString:
    code = ord(char)
    label = f"U+{code:04X} {unicodedata.name(char, '')}".strip()
    if code < 0x20:
        symbol = chr(0x2400 + code)  # the Control Pictures block: ␀ … ␟
    elif code == 0x7F:
        symbol = "\u2421"
    else:
        symbol = f"U+{code:04X}"
    return format_html('<span class="ctrl" title="{}">{}</span>', label, symbol)


@lru_cache(maxsize=512)
def _lexer(name: str) -> Lexer:
    """Cached per file name rather than per extension: Pygments also matches whole names
    (Makefile, Dockerfile, CMakeLists.txt), which an extension alone would get wrong."""
    try:
        return get_lexer_for_filename(name)
    except ClassNotFound:
        return TextLexer()
