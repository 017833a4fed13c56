"""``$NAME`` splicing of Python values into GLSL source, for ``%%glsl`` (plain Python, no IPython).

``$NAME`` or ``${NAME}`` is replaced by the value of ``NAME`` in a namespace; ``$$`` gives a
literal ``$``.  :class:`Spliced` remembers where each line of the result came from, so that the
compiler's diagnostics can be given back in the user's own lines.

Example
-------
>>> splice("layout(local_size_x = $N) in;", {"N": 64}).text
'layout(local_size_x = 64) in;'
"""

from __future__ import annotations

import numbers
import re
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Spliced", "splice", "splice_value"]

_SPLICE_RE = re.compile(r"\$(?:(\$)|\{([A-Za-z_][A-Za-z0-9_]*)\}|([A-Za-z_][A-Za-z0-9_]*))")


def splice_value(value: Any) -> str | None:
    """The GLSL text for a Python value, or None when the value is ambiguous (not spliced).

    ``str`` is inserted verbatim; ``bool`` becomes ``true``/``false``; integers and floats
    (Python or numpy scalars) their ``str``.

    Example
    -------
    >>> splice_value(256), splice_value(0.5), splice_value(True), splice_value([1])
    ('256', '0.5', 'true', None)
    """
    if isinstance(value, str):
        return value
    t = type(value)
    if isinstance(value, bool) or (t.__module__ == "numpy" and t.__name__ in ("bool_", "bool")):
        return "true" if value else "false"
    if isinstance(value, numbers.Integral):
        return str(int(value))
    if isinstance(value, numbers.Real):
        return str(value)
    return None


@dataclass
class Spliced:
    """What :func:`splice` did.

    Attributes
    ----------
    text : str
        The source after splicing.
    values : dict
        ``NAME -> inserted text`` for every name that was replaced.
    skipped : dict
        ``NAME -> type name`` for names found in the namespace but left untouched (ambiguous).
    lines : list of (source line, multi-line NAME or None, line inside it, first splice column)
        For each line of ``text``: where it came from in the original source (1-based).
    """

    text: str
    values: dict[str, str] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)
    lines: list[tuple[int, str | None, int, int | None]] = field(default_factory=list)

    @classmethod
    def unchanged(cls, source: str) -> Spliced:
        """``source`` as it is (what ``--no-splice`` gives): every line maps to itself.

        Example
        -------
        >>> Spliced.unchanged("a\nb").lines
        [(1, None, 0, None), (2, None, 0, None)]
        """
        n = source.count("\n") + 1
        return cls(source, lines=[(i, None, 0, None) for i in range(1, n + 1)])

    def map_diagnostics(
        self, diagnostics: list[tuple[int, int, str, str]], offset: int = 0
    ) -> list[tuple[int, int, str, str]]:
        """Diagnostics of the spliced text -> the original source's lines (+ ``offset``).

        A diagnostic inside a multi-line spliced value points at the ``$NAME`` line and says
        which line of the value it is; a column behind a splice on the same line becomes 0
        (unknown).

        Example
        -------
        >>> s = splice("a\\n$B\\nc", {"B": "x\\ny"})
        >>> s.map_diagnostics([(4, 0, "error", "oops")])
        [(3, 0, 'error', 'oops')]
        """
        out = []
        for line, col, sev, msg in diagnostics:
            if 1 <= line <= len(self.lines):
                src, name, j, first = self.lines[line - 1]
                if name is not None:
                    msg = f"{msg} (line {j + 1} of the text spliced from ${name})"
                    col = 0
                elif first is not None and col > first:
                    col = 0
                line = src + offset
            elif line > 0:
                line += offset
            out.append((line, col, sev, msg))
        return out


def splice(source: str, namespace: dict[str, Any]) -> Spliced:
    """Replace ``$NAME`` / ``${NAME}`` by the values of ``namespace``; ``$$`` -> ``$``.

    Names absent from ``namespace`` are left untouched, and so are values that
    :func:`splice_value` calls ambiguous (recorded in ``Spliced.skipped``).

    Example
    -------
    >>> splice("layout(local_size_x = $N) in; // $$N, $other", {"N": 64}).text
    'layout(local_size_x = 64) in; // $N, $other'
    """
    result = Spliced("")
    out: list[str] = []
    for lineno, src_line in enumerate(source.split("\n"), start=1):
        pieces: list[str] = []
        pos = 0
        first: int | None = None
        multi: str | None = None
        for m in _SPLICE_RE.finditer(src_line):
            pieces.append(src_line[pos : m.start()])
            pos = m.end()
            if m.group(1):
                text = "$"
            else:
                name = m.group(2) or m.group(3)
                text = m.group(0)
                if name in namespace:
                    v = splice_value(namespace[name])
                    if v is None:
                        result.skipped[name] = type(namespace[name]).__name__
                    else:
                        text = v
                        result.values[name] = v
                        if "\n" in v and multi is None:
                            multi = name
            if text != m.group(0) and first is None:
                first = m.start() + 1  # 1-based column of the first change on this line
            pieces.append(text)
        pieces.append(src_line[pos:])
        joined = "".join(pieces)
        n = joined.count("\n") + 1
        for j in range(n):
            result.lines.append((lineno, multi if n > 1 else None, j, first))
        out.append(joined)
    result.text = "\n".join(out)
    return result
