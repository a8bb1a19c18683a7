"""Rate-distortion evaluation: our models and classical codecs on Kodak (or
any folder) with real files, BD-rates, plots and the RDdata/ tree.

`main(argv)` is the command line (`python -m tfcodec.eval --help`).
"""


def main(argv=None):
  """Runs the evaluation CLI with `argv` (a list; None = sys.argv[1:]) and
  returns the exit status."""
  from tfcodec.eval.cli import main as cli_main
  return cli_main(argv)
