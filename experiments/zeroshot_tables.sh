#!/usr/bin/env bash
# Zero-shot tables: CLIP vs CALIP on the 11 CoOp datasets, PointCLIP vs CALIP on the 3D datasets.
# Usage: BACKBONE=RN50 PRETRAINED=openai bash experiments/zeroshot_tables.sh [extra eval flags]
# Each run writes results/<dataset>_<backbone>_test.json; add TUNE_ON=test to also get ORACLE rows. DATA (default:
# calip3d's data root, where missing datasets are downloaded) names another data root.
set -euo pipefail
DATA=${DATA:-$(python -c "from calip3d.datasets import default_data_root; print(default_data_root())")}
BACKBONE=${BACKBONE:-RN50}
PRETRAINED=${PRETRAINED:-openai}
TUNE_ON=${TUNE_ON:-val}
for dataset in imagenet caltech101 oxford_pets stanford_cars oxford_flowers food101 fgvc_aircraft sun397 dtd \
               eurosat ucf101 modelnet40 modelnet10 scanobjectnn-objonly scanobjectnn-objbg scanobjectnn-hardest; do
  python -m calip3d.eval --dataset "$dataset" --data-root "$DATA" --backbone "$BACKBONE" \
    --pretrained "$PRETRAINED" --tune-on "$TUNE_ON" "$@" || echo "skipped $dataset (see the error above)"
done
python -m calip3d table results/*_"${BACKBONE//\//-}"_test.json --output "results/zeroshot_${BACKBONE//\//-}.md" \
  --plot "results/zeroshot_${BACKBONE//\//-}.png"
cat "results/zeroshot_${BACKBONE//\//-}.md"
