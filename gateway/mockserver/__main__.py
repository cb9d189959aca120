"""``python -m gateway.mockserver``: run the mock provider in the foreground (see cli.main)."""

from gateway.mockserver.cli import main

main()
