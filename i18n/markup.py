"""What a translation must carry over unchanged: math, code, roles' targets, directives, links.

``markup(text)`` returns the set of such spans; a translation is faithful when its set
equals the English one's. Link texts, role texts such as ``{doc}`Chapter 2 <target>``` and
exercise titles are prose and are translated; their targets, labels and options are not.
"""

from __future__ import annotations

import re

_FENCE = re.compile(
    r"^(?P<fence>`{3,}|:{3,})(?P<info>[^\n]*)\n(?P<body>.*?)^(?P=fence)[ \t]*$", re.M | re.S
)
_DISPLAY_MATH = re.compile(r"\$\$.+?\$\$", re.S)
# Inline math may wrap onto the next line (not across a blank line).
_INLINE_MATH = re.compile(r"(?<![\\$])\$(?!\$)(?:[^$\n]|\n(?![ \t]*\n))+?(?<!\\)\$")
_ROLE = re.compile(r"\{(?P<role>[\w:-]+)\}(?P<tick>`+)(?P<body>.+?)(?P=tick)", re.S)
_CODE = re.compile(r"(?<!`)(?P<tick>`+)(?!`)(?P<body>.+?)(?<!`)(?P=tick)(?!`)", re.S)
_LINK_TARGET = re.compile(r"\]\((?P<target>[^)\s]+)\)")
_LABEL = re.compile(r"^\((?P<label>[\w.:-]+)\)=\s*$", re.M)
_OPTION = re.compile(r"^\s*(:[\w-]+:.*?)\s*$", re.M)
_HTML_TAG = re.compile(r"</?[a-zA-Z][^>\n]*>")
_LABEL_ARGUMENT_DIRECTIVES = {"solution-start", "solution-end"}
_DIRECTIVE = re.compile(r"\{(?P<name>[\w:-]+)\}\s*(?P<argument>.*)")


def directive(info: str) -> tuple[str, str] | None:
    """A fence's info string ``{name} argument`` as ``(name, argument)``; None for code."""
    match = _DIRECTIVE.match(info.strip())
    return None if match is None else (match.group("name"), match.group("argument"))


def markup(text: str) -> set[str]:
    """Every span of ``text`` that a translation keeps exactly, each tagged with its kind."""
    spans: set[str] = set()

    def fence(match: re.Match) -> str:
        parsed = directive(match.group("info"))
        if parsed is None:  # a code block: all of it is code
            spans.add(f"code block: {match.group('info').strip()}\n{match.group('body')}")
            return "\n"
        name, argument = parsed
        spans.add(f"directive: {name}")
        if name in _LABEL_ARGUMENT_DIRECTIVES and argument:
            spans.add(f"directive argument: {argument}")
        body = match.group("body")
        for option in _OPTION.findall(body):
            spans.add(f"option: {option}")
        return "\n" + _OPTION.sub("", body) + "\n"

    text = _FENCE.sub(fence, text)
    for pattern, kind in ((_DISPLAY_MATH, "math"), (_INLINE_MATH, "math")):
        spans.update(f"{kind}: {m.group(0)}" for m in pattern.finditer(text))
        text = pattern.sub(" ", text)

    def role(match: re.Match) -> str:
        body = match.group("body")
        target = re.search(r"<([^<>]+)>\s*$", body)
        spans.add(f"role: {{{match.group('role')}}} {target.group(1) if target else body}")
        return " "

    text = _ROLE.sub(role, text)
    spans.update(f"code: {m.group('body')}" for m in _CODE.finditer(text))
    text = _CODE.sub(" ", text)
    spans.update(f"link: {m.group('target')}" for m in _LINK_TARGET.finditer(text))
    spans.update(f"label: {m.group('label')}" for m in _LABEL.finditer(text))
    spans.update(f"html: {m.group(0)}" for m in _HTML_TAG.finditer(text))
    return spans


def markup_problems(english: str, korean: str) -> list[str]:
    """What the translation lost or added, one line each (empty when faithful)."""
    expected, found = markup(english), markup(korean)
    problems = [f"missing {span!r}" for span in sorted(expected - found)]
    problems += [f"not in the English {span!r}" for span in sorted(found - expected)]
    return problems
