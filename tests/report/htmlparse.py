"""A small html.parser-based reader for the report's structure (tables, ids, links, svgs)."""

from __future__ import annotations

from dataclasses import dataclass, field
from html.parser import HTMLParser


@dataclass
class Table:
    """A table's cells as text, by row; ``attrs`` of each row's first element and the table."""

    attrs: dict[str, str | None]
    rows: list[list[str]] = field(default_factory=list)
    row_ids: list[str | None] = field(default_factory=list)


class ReportParser(HTMLParser):
    """Collects tags, ids, hrefs, tables and svg count."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[str] = []
        self.ids: list[str] = []
        self.hrefs: list[str] = []
        self.srcs: list[str] = []
        self.tables: list[Table] = []
        self.svgs: list[dict[str, str | None]] = []
        self.classes: list[str] = []
        self.text: list[str] = []
        self._stack: list[Table] = []
        self._cell: list[str] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        self.tags.append(tag)
        if a.get("id"):
            self.ids.append(str(a["id"]))
        if a.get("class"):
            self.classes.extend(str(a["class"]).split())
        if tag == "a" and a.get("href"):
            self.hrefs.append(str(a["href"]))
        if a.get("src"):
            self.srcs.append(str(a["src"]))
        if tag == "svg":
            self.svgs.append(a)
        if tag == "table":
            table = Table(a)
            self.tables.append(table)
            self._stack.append(table)
        elif tag == "tr" and self._stack:
            self._stack[-1].rows.append([])
            self._stack[-1].row_ids.append(a.get("id"))
        elif tag in ("td", "th") and self._stack:
            self._cell = []

    def handle_endtag(self, tag: str) -> None:
        if tag == "table" and self._stack:
            self._stack.pop()
        elif tag in ("td", "th") and self._stack and self._cell is not None:
            self._stack[-1].rows[-1].append(" ".join("".join(self._cell).split()))
            self._cell = None

    def handle_data(self, data: str) -> None:
        self.text.append(data)
        if self._cell is not None:
            self._cell.append(data)


def parse(html: str) -> ReportParser:
    parser = ReportParser()
    parser.feed(html)
    parser.close()
    return parser


def table_with(parser: ReportParser, *headers: str) -> Table:
    """The first table whose header row starts with ``headers``."""
    for t in parser.tables:
        if t.rows and t.rows[0][: len(headers)] == list(headers):
            return t
    raise AssertionError(f"no table with headers {headers}")
