"""`python -m mirkit ...` (e.g. under `torchrun -m mirkit train ...`)."""

from mirkit.cli import main

main()
