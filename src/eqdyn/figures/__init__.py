"""Figures and the claims table of the study, one module per figure (``python -m eqdyn.figures.<name>``).

Every module reads the tidy tables the analyses write (``results/<study>/analysis/...``) and the runs' own
``run.json`` and ``manifest.json``, and writes the figure as both PDF and PNG. :mod:`eqdyn.figures.style` holds the
shared look (sizes, fonts, colour-blind palette, one colour per model family); :mod:`eqdyn.figures.tables` reads and
selects from the tables; :mod:`eqdyn.figures.claims` turns the same tables into the claims table with computed
verdicts.

Modules: ``equiv_percent`` (1), ``loss_decomposition`` (2), ``robustness`` (3), ``hessian_spectra`` (4),
``efficiency`` (5), ``gradients`` (6), ``twirling`` (7), ``claims``.
"""
