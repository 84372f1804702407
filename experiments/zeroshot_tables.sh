#!/usr/bin/env bash
# Zero-shot tables: CLIP vs CALIP on the 11 CoOp datasets, PointCLIP vs CALIP on the 3D datasets.
# Usage: DATA=/path/to/data BACKBONE=RN50 PRETRAINED=openai bash experiments/zeroshot_tables.sh
# Each run writes results/<dataset>_<backbone>_test.json; add TUNE_ON=test to also get ORACLE rows.
set -euo pipefail
DATA=${DATA:?set DATA to the folder holding the datasets}
BACKBONE=${BACKBONE:-RN50}
PRETRAINED=${PRETRAINED:-openai}
TUNE_ON=${TUNE_ON:-val}
for dataset in imagenet caltech101 oxford_pets stanford_cars oxford_flowers food101 fgvc_aircraft sun397 dtd \
               eurosat ucf101 modelnet40 modelnet10 scanobjectnn-objonly scanobjectnn-objbg scanobjectnn-hardest; do
  python -m calip3d.eval --dataset "$dataset" --data-root "$DATA" --backbone "$BACKBONE" \
    --pretrained "$PRETRAINED" --tune-on "$TUNE_ON" "$@" || echo "skipped $dataset (see the error above)"
done
python experiments/collect_results.py results/*_"${BACKBONE//\//-}"_test.json
