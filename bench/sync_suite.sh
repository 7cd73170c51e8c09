#!/bin/sh
# Copy the suite records (runs/suite*, gitignored) into bench/results and regenerate the reports (cheap: no model)
cd "$(dirname "$0")/.."
export PYTHONPATH=. HF_HUB_OFFLINE=1
P=".venv/bin/python -m bench.suite"
cp runs/suite/records/*.json bench/results/suite/records/
mkdir -p bench/results/suite_gemma/records && cp runs/suite_gemma/records/*.json bench/results/suite_gemma/records/
$P --out runs/suite --report dev > bench/results/suite/report_dev.md
$P --out runs/suite --report test > bench/results/suite/report_test.md
$P --out runs/suite --pick > bench/results/suite/pick_dev.txt && cp runs/suite/pick.json bench/results/suite/pick.json
for a in runs/audit6_a05 runs/audit6_a06; do  # the sixth session's recovery attacks (bench/audit.py)
  [ -d "$a" ] || continue
  for d in "$a"/audit-*; do
    mkdir -p "bench/results/audit6/$(basename "$a")/$(basename "$d")"
    cp "$d/audit.json" "$d/report.md" "bench/results/audit6/$(basename "$a")/$(basename "$d")/"
  done
  .venv/bin/python -m bench.audit --out "$a" --report > "bench/results/audit6/$(basename "$a")/table.md"
done
$P --out runs/suite --frontier bench/results/suite/frontier_dev.png \
  --audits bench/results/audit6/audit6_a05 bench/results/audit6/audit6_a06 > bench/results/suite/frontier_dev.txt
$P --out runs/suite --halves > bench/results/suite/halves_dev.md
$P --out runs/suite --rebased > bench/results/suite/rebased_dev.md
$P --out runs/suite --budgets '{"method": "drop", "alpha": 0.6, "beta": 0.0}' > bench/results/suite/budgets_dev.md
$P --out runs/suite_gemma --halves > bench/results/suite_gemma/halves_dev.md
$P --out runs/suite --predictors > bench/results/suite/predictors_dev.md
$P --out runs/suite_gemma --report dev > bench/results/suite_gemma/report_dev.md
$P --out runs/suite_gemma --report test > bench/results/suite_gemma/report_test.md 2>/dev/null || true
$P --out runs/suite_gemma --pick > bench/results/suite_gemma/pick_dev.txt && cp runs/suite_gemma/pick.json bench/results/suite_gemma/pick.json
$P --out runs/suite_gemma --model gemma3-270m --frontier bench/results/suite_gemma/frontier_dev.png > bench/results/suite_gemma/frontier_dev.txt
cp runs/suite_gemma/importance/importance.json bench/results/suite_gemma/importance.json
mkdir -p bench/results/suite/gradmatch && cp runs/suite/gradmatch/*.json bench/results/suite/gradmatch/ 2>/dev/null || true
if [ -d runs/suite_recheck ]; then  # the fifth session's rerun of the SmolLM2 pick on dev (another machine)
  mkdir -p bench/results/suite_recheck/records && cp runs/suite_recheck/records/*.json bench/results/suite_recheck/records/
  $P --out runs/suite_recheck --report dev > bench/results/suite_recheck/report_dev.md
fi
