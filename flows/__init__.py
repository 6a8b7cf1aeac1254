"""The flows: ``monitoring`` and ``analytics`` with their alert rules, resolved by
name in :mod:`flows.registry`; and in packages of their own, the windowing engine
(:mod:`flows.engine`), running a flow (:mod:`flows.runtime`), config-driven
pipelines (:mod:`flows.pipelines`) and the command line (:mod:`flows.cli`)."""
