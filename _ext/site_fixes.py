"""Small fixes to what Jupyter Book 1 puts on every page (a local Sphinx extension).

* sphinx-thebe's configuration script is registered twice (its ``env-before-read-docs``
  handler runs once per read), so every page declared ``const THEBE_JS_URL`` twice and
  the browser logged a SyntaxError. Identical scripts are emitted once.
* pydata-sphinx-theme logs "Got invalid theme mode" on a reader's first visit unless a
  default colour mode is set; it is set to ``auto`` (follow the reader's system).

tests/site/test_site.py checks, in a real browser, that no page logs a console error.
"""

from __future__ import annotations


def _fix_page(app, pagename, templatename, context, doctree) -> None:
    context.setdefault("default_mode", "auto")
    scripts = context.get("script_files")
    if not scripts:
        return
    seen, unique = set(), []
    for script in scripts:
        attributes = tuple(sorted(getattr(script, "attributes", {}).items()))
        key = (getattr(script, "filename", str(script)) or "", attributes)  # None and "" alike
        if key not in seen:
            seen.add(key)
            unique.append(script)
    scripts[:] = unique


def setup(app):
    # After every other extension has added its page scripts.
    app.connect("html-page-context", _fix_page, priority=900)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
