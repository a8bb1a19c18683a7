#!/bin/bash
# Runs `train.py --flagfile=FLAGFILE [flags...]` and re-runs it whenever the
# process dies of a native crash, so a long run keeps going unattended; every
# re-run resumes from the run's last checkpoint (README, "Resuming").
#
# Why: on a 2-core AMD EPYC (Zen 4; AVX512-VNNI/BF16, no AMX), seen
# 2026-12-04, TF 2.14's oneDNN kernels corrupted the heap in the first steps
# of TCM-S and Cheng 2020 training (glibc aborts with "corrupted
# double-linked list" / "free(): invalid pointer", or a segfault) in float32
# and bf16, with any ONEDNN_MAX_CPU_ISA and with one inter-op thread; only
# TF_ENABLE_ONEDNN_OPTS=0 avoided it, at about 4x the step time. Cheng 2020
# runs got past their first steps after one or two restarts; TCM-S training
# never reached its 50th step in five starts (two 3-step benchmarks passed).
# train.py's --conv_kernel_grad=patches (the default on AMD) avoids the
# kernel that faulted; this loop stays as the safety net.
#
#   nohup tools/train_resumed.sh configs/<model>/<recipe>.flags \
#       --checkpoint_every=100 >> runs/<run>/nohup.log 2>&1 &
#
# Stops after a clean exit, a SIGTERM (exit 143: stop it by killing
# train.py, which checkpoints first) or 40 restarts. TF_NUM_INTRAOP_THREADS
# defaults to 1 (one run per core).
set -u
flagfile=$1; shift
cd "$(dirname "$0")/.."
for attempt in $(seq 40); do
  TF_NUM_INTRAOP_THREADS=${TF_NUM_INTRAOP_THREADS:-1} \
    .venv/bin/python train.py --flagfile="$flagfile" "$@"
  rc=$?
  if [ $rc -eq 0 ] || [ $rc -eq 143 ]; then exit $rc; fi
  echo "=== train.py exited with $rc at $(date -u), restart $attempt"
  sleep 3
done
exit 1
