"""The one exception type of the zoo: a user-facing problem with a model id, a dataset or a run."""


class ZooError(ValueError):
    """Something the user asked for cannot be done; the message says what is wrong and what to do."""
