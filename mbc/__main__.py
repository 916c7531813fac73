"""``python -m mbc``: the same as the ``mbc`` console script."""

from mbc.cli import main

if __name__ == "__main__":
    main()
