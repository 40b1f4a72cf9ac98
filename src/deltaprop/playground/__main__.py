"""`python -m deltaprop.playground`: the same as the `deltaprop-playground` command."""

from deltaprop.playground.server import main

main()
