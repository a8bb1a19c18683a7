"""Where a run's weights came from, recorded when the run starts.

A run started with --finetune_from, --widen_from or --warm_start_from inherits
the steps and CPU-hours of the file it starts from. That file may be replaced
later: a re-shipped weight keeps its name, so by export time the path can name
the run's own successor. The parent's metadata (its recipe, its own parents)
and the file's SHA-256 are therefore copied into the run's log.jsonl as a
`parent` event at the start, and `loop.run_summary` carries them, and the
lineage's summed CPU-hours, into the exported file's metadata.

Runs started before this was recorded can be given their parent afterwards:

  python -m tfcodec.train.lineage --run_dir=runs/x --how=finetune_from \
      --parent=old.npz

(e.g. `old.npz` extracted from git history with `git show`).
"""

import hashlib
import io
import json
import os

from tfcodec import zoo

HOW = ("finetune_from", "widen_from", "warm_start_from")


def parent_record(how, path):
  """The fields of a `parent` log event for the weight file `path`."""
  if how not in HOW:
    raise ValueError(f"how must be one of {', '.join(HOW)}; got {how!r}")
  with open(path, "rb") as f:
    blob = f.read()  # one read serves the hash and the metadata
  return dict(how=how, path=path, sha256=hashlib.sha256(blob).hexdigest(),
              metadata=zoo.read_metadata(io.BytesIO(blob)))


def record_parent(run_dir, how, path):
  """Appends a `parent` event to an existing run's log (for runs whose log
  predates parent events). It carries no session fields: it costs no
  training time and must not count as a session."""
  log_path = os.path.join(run_dir, "log.jsonl")
  if not os.path.exists(log_path):
    raise FileNotFoundError(f"{log_path}: no such run log")
  record = dict(event="parent", **parent_record(how, path))
  from tfcodec.train import loop  # loop imports this module
  loop.start_on_fresh_line(log_path)
  with open(log_path, "a") as f:
    f.write(json.dumps(record) + "\n")
  return record


def parents(records):
  """The distinct `parent` events of a run's log records (a restarted run
  logs its parent again; the same file counts once)."""
  seen, found = set(), []
  for r in records:
    if r.get("event") != "parent":
      continue
    key = (r["how"], r["sha256"])
    if key not in seen:
      seen.add(key)
      found.append({k: r[k] for k in ("how", "path", "sha256", "metadata")})
  return found


def inherited_cpu_hours(parent_list):
  """CPU-hours spent on the parents' weights, through their own lineages."""
  total = 0.
  for parent in parent_list:
    run = parent["metadata"].get("run", {})
    total += run.get("lineage_cpu_hours", run.get("cpu_hours", 0.))
  return total


def main(argv=None):
  import argparse
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--run_dir", required=True)
  parser.add_argument("--how", required=True, choices=HOW)
  parser.add_argument("--parent", required=True, help="the weight file")
  args = parser.parse_args(argv)
  record = record_parent(args.run_dir, args.how, args.parent)
  run = record["metadata"].get("run", {})
  print(f"{args.run_dir}: parent {args.parent} ({args.how}, sha256 "
        f"{record['sha256'][:12]}, {run.get('steps', '?')} steps, "
        f"{run.get('lineage_cpu_hours', run.get('cpu_hours', '?'))} CPU-h)")


if __name__ == "__main__":
  main()
