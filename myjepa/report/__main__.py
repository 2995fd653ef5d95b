"""`python -m myjepa.report`: the same as `myjepa report`."""

from myjepa.errors import run_cli
from myjepa.report import main

run_cli(main)
