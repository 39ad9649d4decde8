"""One self-contained HTML page: inline CSS, inline SVG, no script and no
address outside the page (it opens offline, attached to a pull request or
kept as a CI artifact), readable on a phone and printed.

A page is a title, a verdict line (optional), a few key figures and
sections; a section whose files could not be read or drawn says so in
place (``Section.failed``) and the rest of the page still stands.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from html import escape
from typing import Any, Callable, Sequence

CSS = """
:root{--fg:#1d1d1f;--mute:#666;--line:#ddd;--ok:#1a7f37;--bad:#b42318;--bg:#fff}
*{box-sizing:border-box}
body{font:15px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;color:var(--fg);background:var(--bg);
margin:0 auto;max-width:1000px;padding:16px}
h1{font-size:1.5em;margin:.2em 0}h2{font-size:1.15em;margin:1.4em 0 .4em;border-bottom:1px solid var(--line)}
.sub{color:var(--mute);margin:0 0 .8em}
.verdict{padding:10px 14px;border-radius:6px;font-weight:600;margin:.6em 0}
.verdict.ok{background:#e7f6ec;color:var(--ok)}.verdict.bad{background:#fdecea;color:var(--bad)}
.figures{display:flex;flex-wrap:wrap;gap:8px;margin:.6em 0}
.figure{border:1px solid var(--line);border-radius:6px;padding:6px 10px;min-width:120px}
.figure b{display:block;font-size:1.2em}.figure span{color:var(--mute);font-size:.85em}
table{border-collapse:collapse;width:100%;font-size:.9em;margin:.4em 0}
th,td{border-bottom:1px solid var(--line);padding:4px 6px;text-align:right;vertical-align:top}
th:first-child,td:first-child{text-align:left}td.text{text-align:left;word-break:break-all;font-size:.85em}
tr.hi td{background:#fff8e1}
.scroll{overflow-x:auto}
svg.chart{width:100%;height:auto;font-size:11px;max-width:900px}svg.chart .tick{fill:#444;font-size:10px}
.note{color:var(--mute);font-size:.9em}.failed{color:var(--bad)}
footer{color:var(--mute);font-size:.8em;margin-top:2em;border-top:1px solid var(--line);padding-top:.5em}
td.text{min-width:18em}
@media (max-width:600px){body{padding:10px}svg.chart{font-size:17px}svg.chart .tick{font-size:15px}}
@media print{body{max-width:none;font-size:11pt}.scroll{overflow:visible}h2{break-after:avoid}svg{break-inside:avoid}}
"""


@dataclass
class Section:
    title: str
    html: str = ""
    failed: str | None = None  # why it could not be drawn

    def render(self) -> str:
        body = (f'<p class="failed">This part could not be drawn: {escape(self.failed)}</p>' if self.failed
                else self.html)
        return f"<section><h2>{escape(self.title)}</h2>{body}</section>"


@dataclass
class Page:
    title: str
    subtitle: str = ""
    verdict: tuple[bool, str] | None = None  # passed?, what
    figures: list[tuple[str, str]] = field(default_factory=list)  # value, what it is
    sections: list[Section] = field(default_factory=list)
    source: str = ""  # the run folder

    def section(self, title: str, build: Callable[[], str]) -> None:
        """A section drawn by ``build``; what goes wrong in it is said in place."""
        try:
            self.sections.append(Section(title, build()))
        except Exception as e:  # noqa: BLE001 - a file cut short or missing: the page still stands
            self.sections.append(Section(title, failed=f"{type(e).__name__}: {' '.join(str(e).split())[:300]}"))

    def render(self) -> str:
        parts = [f"<h1>{escape(self.title)}</h1>"]
        if self.subtitle:
            parts.append(f'<p class="sub">{escape(self.subtitle)}</p>')
        if self.verdict is not None:
            ok, what = self.verdict
            parts.append(f'<div class="verdict {"ok" if ok else "bad"}">{"PASSED" if ok else "FAILED"}: '
                         f"{escape(what)}</div>")
        if self.figures:
            parts.append('<div class="figures">' + "".join(
                f'<div class="figure"><b>{escape(v)}</b><span>{escape(k)}</span></div>' for v, k in self.figures)
                + "</div>")
        parts += [s.render() for s in self.sections]
        parts.append(f"<footer>odml report of the run folder {escape(self.source)}, drawn from its files alone "
                     "(<code>odml report FOLDER</code> draws it again, the same).</footer>")
        return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
                "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
                f"<title>{escape(self.title)}</title><style>{CSS}</style></head><body>"
                + "".join(parts) + "</body></html>\n")


def num(v: Any, digits: int = 4) -> str:
    """A figure as the tables write it ("-" when missing)."""
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "-"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, int):
        return f"{v:,}"
    if isinstance(v, float):
        return f"{v:.{digits}g}" if abs(v) < 1e4 else f"{v:,.0f}"
    return str(v)


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]], text_cols: Sequence[int] = (),
          highlight: Sequence[bool] | None = None) -> str:
    """A table; ``text_cols``: columns of long text (architectures)."""
    head = "".join(f"<th>{escape(h)}</th>" for h in headers)
    body = []
    for i, r in enumerate(rows):
        cls = ' class="hi"' if highlight and highlight[i] else ""
        cells = "".join(f'<td class="text">{escape(str(v))}</td>' if j in text_cols else f"<td>{escape(num(v))}</td>"
                        for j, v in enumerate(r))
        body.append(f"<tr{cls}>{cells}</tr>")
    return f'<div class="scroll"><table><thead><tr>{head}</tr></thead><tbody>{"".join(body)}</tbody></table></div>'


def note(text: str) -> str:
    return f'<p class="note">{escape(text)}</p>'
