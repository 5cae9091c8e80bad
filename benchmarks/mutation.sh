#!/usr/bin/env bash
# Mutation score of the paper's method (benchmarks/RESULTS.md "Mutation score"): mutmut mutates the functions
# that carry the method (list below) and runs, for every mutant, only the fast-tier tests (-m "not slow") of the
# files in pyproject.toml [tool.mutmut] pytest_add_cli_args_test_selection that executed the mutated function.
# A measurement, not a CI check. Needs the dev extra (mutmut). Usage: benchmarks/mutation.sh [extra mutmut globs]
# Writes mutants/ (scratch, git-ignored) and benchmarks/mutation_results.txt (every mutant and its verdict).
set -euo pipefail
cd "$(dirname "$0")/.."
unset PYTHONPATH  # the tests must import the mutated copy under mutants/, never this checkout
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 MPLBACKEND=Agg OMP_NUM_THREADS=1 MKL_NUM_THREADS=1
FUNCS=(
  # the τ rule, the negative draw, the windows and the validation split (paper §3.4)
  "cezsar.mining_rules.x_admissible__mutmut_*" "cezsar.mining_rules.x_rule_mask__mutmut_*"
  "cezsar.mining_rules.x_draw_negatives__mutmut_*" "cezsar.mining_rules.x__ranges__mutmut_*"
  "cezsar.mining_rules.x__rank_in_group__mutmut_*" "cezsar.mining_rules.x__pair_member__mutmut_*"
  "cezsar.mining_rules.x_random_windows__mutmut_*" "cezsar.mining_rules.x_video_split__mutmut_*"
  "cezsar.mining.x_mine__mutmut_*" "cezsar.mining.xǁ_ExactMinerǁ__call____mutmut_*"
  "cezsar.mining.x__object_positives__mutmut_*" "cezsar.featurebank.x_window_index__mutmut_*"
  "cezsar.mining_sample.x_sample_negatives__mutmut_*" "cezsar.mining_sample.xǁ_Scorerǁ__call____mutmut_*"
  "cezsar.mining_sample.xǁ_Scorerǁ_append__mutmut_*" "cezsar.mining_sample.x__layouts__mutmut_*"
  "cezsar.mining_sample.x__deal__mutmut_*" "cezsar.mining_sample.xǁ_Poolsǁtake__mutmut_*"
  # Eqs. 1-7: the model's paper path and the loss
  "cezsar.model.xǁSinusoidalPositionalEncodingǁ*" "cezsar.model.xǁVisualEmbedderǁ_first__mutmut_*"
  "cezsar.model.xǁVisualEmbedderǁ_last__mutmut_*" "cezsar.model.xǁVisualEmbedderǁforward__mutmut_*"
  "cezsar.model.xǁSentenceEmbedderǁforward__mutmut_*" "cezsar.model.xǁJointEmbedderǁ*"
  "cezsar.train.x_triplet_loss__mutmut_*" "cezsar.train.x_batch_loss__mutmut_*"
  # early stopping and the checkpoint choice
  "cezsar.train.x_fit__mutmut_*" "cezsar.train.x_evaluate__mutmut_*"
  # prototypes and Eqs. 8-9
  "cezsar.prototypes.*" "cezsar.zsar.x_l2_normalize__mutmut_*" "cezsar.zsar.x_video_embedding__mutmut_*"
  "cezsar.zsar.x_cosine_scores__mutmut_*" "cezsar.zsar.x_predict__mutmut_*" "cezsar.zsar.x_true_class_rank__mutmut_*"
  "cezsar.zsar.x_topk_correct__mutmut_*" "cezsar.zsar.x_metrics__mutmut_*" "cezsar.zsar.x_mean_rows__mutmut_*"
  "cezsar.zsar.x_encode_videos__mutmut_*" "cezsar.zsar.x_clip_windows__mutmut_*"
  # the protocols' splits and statistics
  "cezsar.protocols.x_get_protocol__mutmut_*" "cezsar.protocols.x_make_runs__mutmut_*"
  "cezsar.protocols.x__testing_classes__mutmut_*" "cezsar.protocols.x_load_or_create_splits__mutmut_*"
  "cezsar.protocols.x_evaluate_runs__mutmut_*" "cezsar.protocols.x_summarize__mutmut_*"
  "cezsar.protocols.x_evaluate_protocol__mutmut_*"
)
nice -n 15 mutmut run --max-children "${MUTMUT_CHILDREN:-1}" "${FUNCS[@]}" "$@"
mutmut results --all true > benchmarks/mutation_results.txt || true
grep -c ": killed" benchmarks/mutation_results.txt || true
