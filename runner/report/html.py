"""report.html: the report as one page that opens anywhere -- a laptop, an artifact store, an e-mail.

Strategy: the page is report.md's own text (runner/report/document.py renders it from the records and the
column registry), turned into HTML by Python-Markdown, so there is no second copy of the content to keep in
step. Then, all inline, so that the file makes no request of any kind (no CDN, no font, no script from
elsewhere): each figure becomes a data: URI; one stylesheet; one script that makes every table sortable by
a click on a column's header (numbers as numbers, "—" always last), gives each flag and diagnosis in a
table its meaning as a tooltip (the same legend text the Flags section explains), and puts a Copy button
on the reproduce commands.
"""

from __future__ import annotations

import base64
import html
import json
import re
from pathlib import Path

import markdown

HTML_FILE = "report.html"

_STYLE = """
body { font: 15px/1.45 system-ui, sans-serif; margin: 2em auto; max-width: 1400px; padding: 0 1em; color: #222; }
table { border-collapse: collapse; margin: 1em 0; font-size: 13px; display: block; overflow-x: auto; }
th, td { border: 1px solid #ccc; padding: 3px 7px; white-space: nowrap; }
th { background: #f3f3f3; cursor: pointer; user-select: none; position: sticky; top: 0; }
th[aria-sort=ascending]::after { content: " \\25B2"; } th[aria-sort=descending]::after { content: " \\25BC"; }
tr:nth-child(even) td { background: #fafafa; }
img { max-width: 100%; border: 1px solid #eee; }
pre { background: #f6f6f6; padding: .8em; overflow-x: auto; position: relative; }
pre button { position: absolute; top: .4em; right: .4em; }
.explained { border-bottom: 1px dotted #555; cursor: help; }
"""

_SCRIPT = """
const LEGEND = __LEGEND__;
function value(cell) {
  const text = cell.textContent.trim();
  if (text === "" || text === "\\u2014") return null;
  const number = parseFloat(text.replace(/,/g, "").replace(/=$/, ""));
  return /^[-+]?[\\d.,]+/.test(text) && !isNaN(number) ? number : text.toLowerCase();
}
function sortBy(table, column, header) {
  const body = table.tBodies[0], rows = Array.from(body.rows);
  const up = header.getAttribute("aria-sort") !== "ascending";
  rows.sort((a, b) => {
    const x = value(a.cells[column]), y = value(b.cells[column]);
    if (x === null || y === null) return (x === null) - (y === null);
    const order = typeof x === typeof y ? (x < y ? -1 : x > y ? 1 : 0) : (typeof x === "number" ? -1 : 1);
    return up ? order : -order;
  });
  for (const th of table.tHead.rows[0].cells) th.removeAttribute("aria-sort");
  header.setAttribute("aria-sort", up ? "ascending" : "descending");
  rows.forEach(row => body.appendChild(row));
}
document.querySelectorAll("table").forEach(table => {
  if (!table.tHead || !table.tBodies.length) return;
  Array.from(table.tHead.rows[0].cells).forEach((th, i) => {
    th.title = "sort by " + th.textContent.trim();
    th.addEventListener("click", () => sortBy(table, i, th));
    if (["Flags", "Why"].includes(th.textContent.trim())) {
      for (const row of table.tBodies[0].rows) {
        const cell = row.cells[i];
        const words = cell.textContent.split(",").map(w => w.trim()).filter(w => w);
        cell.textContent = "";
        words.forEach((word, k) => {
          const span = document.createElement("span");
          span.textContent = word;
          if (LEGEND[word]) { span.title = LEGEND[word]; span.className = "explained"; }
          cell.append(span, k < words.length - 1 ? ", " : "");
        });
      }
    }
  });
});
document.querySelectorAll("pre").forEach(pre => {
  const button = document.createElement("button");
  button.textContent = "Copy";
  button.addEventListener("click", () => {
    const text = pre.querySelector("code") ? pre.querySelector("code").textContent : pre.textContent;
    const done = () => { button.textContent = "Copied"; };
    const select = () => {
      const range = document.createRange(); range.selectNodeContents(pre);
      const chosen = window.getSelection(); chosen.removeAllRanges(); chosen.addRange(range);
      document.execCommand("copy"); done();
    };
    if (navigator.clipboard) navigator.clipboard.writeText(text).then(done, select); else select();
  });
  pre.appendChild(button);
});
"""


def render_html(text: str, root: Path, title: str, legend: dict[str, str]) -> str:
    """report.md's `text` as one self-contained page; figures are read from `root`, where report.md lies."""
    body = markdown.markdown(text, extensions=["tables", "fenced_code"], output_format="html")
    body = re.sub(r'<img alt="([^"]*)" src="([^"/]+\.png)"\s*/?>', lambda m: _inline(root, m), body)
    script = _SCRIPT.replace("__LEGEND__", json.dumps(legend, sort_keys=True).replace("</", "<\\/"))
    return (
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        '<link rel="icon" href="data:,">'  # no favicon request either
        f"<title>{html.escape(title)}</title><style>{_STYLE}</style></head>\n<body>\n{body}\n"
        f"<script>{script}</script>\n</body></html>\n"
    )


def _inline(root: Path, match: re.Match) -> str:
    alt, name = match.group(1), match.group(2)
    try:
        data = base64.b64encode((root / name).read_bytes()).decode("ascii")
    except OSError:
        return f"<p><em>{alt}: {html.escape(name)} is missing beside the report</em></p>"
    return f'<img alt="{alt}" src="data:image/png;base64,{data}">'
