"""``python -m informer_nas``: the ``nas`` command (``informer_nas.cli:main``)."""

from informer_nas.cli import main

if __name__ == "__main__":
    main()
