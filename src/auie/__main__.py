"""``python -m auie``: the ``auie`` command."""

from auie.cli.main import main

if __name__ == "__main__":
    main()
