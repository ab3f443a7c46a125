"""``python -m informer_nas.cli``: the ``nas`` command, as ``python -m informer_nas``."""

from informer_nas.cli import main

if __name__ == "__main__":
    main()
