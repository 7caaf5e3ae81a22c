"""The machinery the experiments of :mod:`zoo.experiments` share: the protocol and registry
(``base``), the runner, config checks, the shared pool of runs, the pipelines several experiments
run (``scenario``, ``pretrained_pairs``, ``merge_common``, ``merge_pairs``) and the pages' helpers.

Kept apart from the experiments so that listing them (``base.experiments``, which imports every
module of :mod:`zoo.experiments`) finds only experiments; nothing here registers one or imports one
(``tests/test_architecture.py`` checks the second).
"""
