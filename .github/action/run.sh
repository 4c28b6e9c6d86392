#!/usr/bin/env bash
# The action's run step (action.yml), kept as a script so that CI runs it too
# (.ci/install-check): runs the scenarios or a campaign with the inputs in
# POOLCHAOS_* variables, writes the report into POOLCHAOS_OUT, appends the
# Markdown report to GITHUB_STEP_SUMMARY, and exits with poolchaos's status.
set -uo pipefail
out=${POOLCHAOS_OUT:-poolchaos-reports}
seed=${POOLCHAOS_SEED:-1}
summary=${GITHUB_STEP_SUMMARY:-/dev/null}
mkdir -p "$out"
poolchaos=(poolchaos)
[[ ${POOLCHAOS_SUDO:-false} == true && $(id -u) != 0 ]] && poolchaos=(sudo -E env "PATH=$PATH" poolchaos)

if (( ${POOLCHAOS_CAMPAIGN_RUNS:-0} > 0 )); then
    # A campaign needs an oracle: one named pool or target (`pools`), never a custom command.
    "${poolchaos[@]}" campaign --pool "${POOLCHAOS_POOLS:?a campaign needs the input pools: one pool or target}" \
        --runs "$POOLCHAOS_CAMPAIGN_RUNS" --seed "$seed" --out "$out" |
        tee "$out/campaign.txt"
    status=${PIPESTATUS[0]}
    { echo '## poolchaos campaign'; echo '```'; cat "$out/campaign.txt"; echo '```'; } >> "$summary"
else
    args=()
    [[ -n ${POOLCHAOS_TARGET:-} ]] && args+=(--target "$POOLCHAOS_TARGET")
    [[ -z ${POOLCHAOS_TARGET:-} && -n ${POOLCHAOS_POOLS:-} ]] && args+=(--pools "$POOLCHAOS_POOLS")
    read -r -a scenarios <<< "${POOLCHAOS_SCENARIOS:-scenarios}"
    "${poolchaos[@]}" run "${scenarios[@]}" "${args[@]}" --seed "$seed" --out "$out"
    status=$?
    [[ -f $out/report.md ]] && cat "$out/report.md" >> "$summary"
fi
exit "$status"
