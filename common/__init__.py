"""Basics every stage imports and that import no stage: the root exception
(:mod:`common.errors`), progress lines (:mod:`common.progress`) and units
(:mod:`common.units`)."""
