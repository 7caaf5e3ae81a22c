"""The command lines: the top layer, the one place where model ids and dataset names become objects.

``permgraph`` (:mod:`zoo.cli.permgraph`), ``transfer`` (:mod:`zoo.cli.transfer`), ``zoo``
(:mod:`zoo.cli.zoo`) and ``python -m zoo.experiments`` (:mod:`zoo.cli.experiments`). Library code
below them takes objects and never resolves names.
"""
