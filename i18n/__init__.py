"""The Korean edition (한국어판): gettext catalogs, generated Korean pages, and their checks.

The English notebooks and pages are the only source of code and outputs. Their prose is
cut into segments (``segments``), one gettext entry each in
``locale/ko/LC_MESSAGES/<page>.po`` (``catalog``); the Korean pages under ``ko/`` are
generated from the English ones and those catalogs (``generate``). ``markup`` and
``terms`` check each translation: same math, code, roles and directives as the English,
the glossary's Korean term for each English term, and none of its forbidden variants.

Commands (``make translations`` runs the first)::

    python -m i18n update     # catalogs from the English sources, then regenerate ko/
    python -m i18n check      # every problem in every catalog, one line each
"""
