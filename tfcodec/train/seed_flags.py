"""Command-line compatibility with the seed repositories' train.py recipes.

absl already accepts most of their spellings through short names and aliases
defined in train.py (`-e`, `-lr`, `-d`, `--num-workers`, `--N`, `--checkpoint`,
`--save_path`, `-exp`, `--test-dataset`). Two things need help before absl
parses argv:
  * TCM's `--lr_epoch 45 48` gives a list as separate words (argparse
    `nargs="+"`); absl lists are comma-separated, so the words are joined.
  * CompressAI-style datasets are a folder holding `train/` and `test/`;
    `dataset_split` picks the split when such a folder is given.
"""

import os

# Flags whose value may be written as several space-separated words.
MULTI_WORD_FLAGS = ("lr_epoch", "lr_milestones")


def join_multi_word_values(argv, names=MULTI_WORD_FLAGS):
  """['--lr_epoch', '45', '48'] -> ['--lr_epoch=45,48'] for the given flags."""
  result, i = [], 0
  while i < len(argv):
    arg = argv[i]
    name = arg.lstrip("-")
    if arg.startswith("-") and "=" not in arg and name in names:
      values, i = [], i + 1
      while i < len(argv) and not argv[i].startswith("-"):
        values.extend(v for v in argv[i].split(",") if v)
        i += 1
      result.append(f"--{name}={','.join(values)}")
      continue
    result.append(arg)
    i += 1
  return result


def dataset_split(path, split):
  """`path/split` when `path` is a folder with that subfolder, else `path`."""
  if path and os.path.isdir(os.path.join(path, split)):
    return os.path.join(path, split)
  return path
