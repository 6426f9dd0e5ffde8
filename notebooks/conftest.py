"""pytest settings for running the chapter notebooks with nbval."""

OUTPUT_WAIT_SECONDS = 120


def pytest_collection_modifyitems(items):
    """Let nbval wait up to 2 minutes for a finished cell's output: its fixed 5 s failed a cell on a loaded machine."""
    for item in items:
        if hasattr(item, "output_timeout"):
            item.output_timeout = OUTPUT_WAIT_SECONDS
