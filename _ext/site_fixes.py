"""Small fixes to what Jupyter Book 1 puts on every page (a local Sphinx extension).

* sphinx-thebe's configuration script is registered twice (its ``env-before-read-docs``
  handler runs once per read), so every page declared ``const THEBE_JS_URL`` twice and
  the browser logged a SyntaxError. Identical scripts are emitted once.
* pydata-sphinx-theme logs "Got invalid theme mode" on a reader's first visit unless a
  default colour mode is set; it is set to ``auto`` (follow the reader's system).
* The language switch: with ``language_switch = {"root": ..., "label": ..., "hreflang": ...}``
  in the Sphinx config, every page links to the same page in the other edition (``root``
  is the other edition's root relative to this one's): in the sidebar, above the contents, on every
  page (``templates/language-switch.html``), above the title of every content page
  (visible on a phone, whose sidebar is folded away), and in the head as
  ``<link rel="alternate" hreflang>``.

tests/site/test_site.py checks, in a real browser, that no page logs a console error.
"""

from __future__ import annotations

import html
import pathlib

TEMPLATES = pathlib.Path(__file__).parent / "templates"
# sphinx-book-theme's own sidebar, with the switch above the table of contents (where it
# is seen without scrolling the sidebar).
SIDEBAR = [
    "navbar-logo.html",
    "icon-links.html",
    "search-button-field.html",
    "language-switch.html",
    "sbt-sidebar-nav.html",
]


def _language_switch(app, pagename, templatename, context, doctree) -> None:
    switch = app.config.language_switch
    if not switch:
        return
    up = "../" * pagename.count("/")
    href = html.escape(f"{up}{switch['root']}{pagename}.html", quote=True)
    lang = html.escape(switch["hreflang"], quote=True)
    label = html.escape(switch["label"])
    context.update(
        language_switch_href=href, language_switch_lang=lang, language_switch_label=label
    )
    context["metatags"] = (
        context.get("metatags", "") + f'\n<link rel="alternate" hreflang="{lang}" href="{href}" />'
    )
    if "body" in context:
        context["body"] = (
            f'<p class="language-switch"><a href="{href}" hreflang="{lang}" lang="{lang}">'
            f"{label}</a></p>\n" + context["body"]
        )


def _add_sidebar_switch(app, config) -> None:
    if config.language_switch:
        config.templates_path.append(str(TEMPLATES))
        config.html_sidebars = {"**": SIDEBAR}


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
    app.add_config_value("language_switch", None, "html", types=[dict, type(None)])
    app.connect("config-inited", _add_sidebar_switch)
    # Before pydata-sphinx-theme's handler, which drops sidebar templates that render empty.
    app.connect("html-page-context", _language_switch, priority=100)
    # After every other extension has added its page scripts.
    app.connect("html-page-context", _fix_page, priority=900)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
