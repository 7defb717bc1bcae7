#!/bin/bash
# usage: run.sh TAG [exp.py args...]   (one run at a time; common small settings)
cd "$(dirname "$0")/../.."  # the repository root; the venv must be on PATH
export PYTHONPATH=$PWD:$PWD/protos
mkdir -p /tmp/ms
tag=$1; shift
nice -n 10 python docs/multistep-experiments/exp.py --tag "$tag" --set model.hidden_size=128 --set batch_size=64 \
  --set warmup_steps=80 --set eval_every=100000 --set max_minutes=8 "$@" > /tmp/ms/$tag.log 2>&1
python docs/multistep-experiments/show.py < /tmp/ms/$tag.log | tail -1
