# poolchaos recipes. `just` lists them.

# List the recipes.
default:
    @just --list

# Build every binary (the harness, the worker, the owner) in release mode.
build:
    cargo build --release --workspace

# Run the test suite (each test in its own process, with leak checks; the Python adapter's
# own tests run as one of them).
test: python-setup
    cargo nextest run --workspace

# The project's Python: .venv with loky, pebble and billiard, pinned (targets/python/).
python-setup:
    targets/python/setup.sh

# The Python targets' own tests alone (standard library unittest; `just test` runs them too).
python-test: python-setup
    .venv/bin/python -m unittest discover -s targets/python/tests

# The main job: every scenario in scenarios/ against its pools and Python targets, as a table.
chaos: build python-setup
    target/release/poolchaos run scenarios

# The matrix again, writing report.md, report.json, junit.xml and runs/ to reports/latest/.
report: build python-setup
    target/release/poolchaos run scenarios --out reports/latest

# Review snapshot changes (installs cargo-insta if missing).
snapshots:
    command -v cargo-insta >/dev/null || cargo install cargo-insta --locked
    cargo insta test --test-runner nextest --review

# A randomized campaign against a pool: just campaign supervised 1000
campaign pool="supervised" runs="200": build
    target/release/poolchaos campaign --pool {{pool}} --runs {{runs}} --storm-ms 200 --oom-rate 0.01 --out reports/campaign

# A long campaign (10 minutes), all fault kinds, failures shrunk into reports/failures/.
fuzz pool="supervised": build
    target/release/poolchaos campaign --pool {{pool}} --for 10m --storm-ms 150 --oom-rate 0.01 --stall-rate 0.01 --out reports/campaign

# Time one no-fault map of 10,000 echo tasks on 2 workers, for each pool.
speed: build
    target/release/poolchaos speed

# Throughput under failures, the floor beside it, detection latency (quick, < 3 min):
# writes reports/bench/summary.md and reports/bench/throughput.svg.
bench: build
    target/release/poolchaos bench

# The full criterion benches (benches/): floor, throughput, latency; results in target/criterion/.
bench-full: build
    cargo bench -p poolchaos-benches

# Say what a scenario does: just explain scenarios/seed-map-sigkill.toml
explain file: build
    target/release/poolchaos explain {{file}}

# Format the code.
fmt:
    cargo fmt --all

# Lint: clippy with warnings as errors.
lint:
    cargo clippy --workspace --all-targets -- -D warnings

# The sandbox on a real cgroup v2 host (this machine is v1): boots a Debian kernel in QEMU
# (software emulation, under 10 minutes) and runs, inside it, with no variable set, the sandbox
# tests, oom-big-batch as an unprivileged user (without delegation, and delegated), as root from a
# controller-less service cgroup and from a shared one, the reason with /sys/fs/cgroup read-only,
# and a harness SIGKILLed mid-run then restarted. Needs root (apt-get of qemu-system-x86,
# linux-image-amd64, busybox-static; virtme-ng in target/vm/venv).
test-cgroup-v2:
    .ci/vm/run-cgroup-v2

# What CI runs: format check, lint, tests, the main job, the peers' suites, the stages, the bench smoke,
# then the short flake hunt.
ci: python-setup
    cargo fmt --all -- --check
    just lint
    # The scenario matrix's snapshot (170 real runs, third-party races among them) runs alone,
    # after the rest, so the load of other tests does not decide its cells.
    cargo nextest run --workspace --profile ci -E 'not test(=the_outcome_matrix_of_the_scenarios_is_as_snapshotted)'
    cargo nextest run --workspace --profile ci -E 'test(=the_outcome_matrix_of_the_scenarios_is_as_snapshotted)'
    just chaos
    just peers
    just stages
    just chaos-pythons
    just bench-smoke
    just install-check
    just flake-hunt-short

# poolchaos installed outside the checkout: the wheel (maturin) into a fresh venv, and
# `cargo install --path harness`, each used from a temp dir (.ci/install-check).
install-check: build
    .ci/install-check

# The benches compiled and each run once (criterion's --test), and every measurement of
# `poolchaos bench` run on a handful of tasks: nothing is timed.
bench-smoke: build
    cargo bench -p poolchaos-benches -- --test > /dev/null
    target/release/poolchaos bench --smoke > /dev/null

# The peers' own crash suites as scenario sets (scenarios/peers: CPython's ExecutorDeadlockTest
# against py-ppe, loky's TestExecutorDeadLock crash cases against py-loky, each beside our five
# pools); the report ends with "matches the peer's own expectation: N of M".
peers: build python-setup
    target/release/poolchaos run scenarios/peers -j 2

# One scenario per stage of the pipeline (scenarios/stages), against our pools and the Python targets.
stages: build python-setup
    target/release/poolchaos run scenarios/stages -j 2

# The seed's scenarios against every Python target on Python 3.11, 3.12 and 3.13 (a venv each,
# .venvs/3.N) with fork, forkserver and spawn; two runs at a time, as spawn is slow to start.
chaos-pythons: build
    targets/python/setup.sh 3.11 3.12 3.13
    target/release/poolchaos run scenarios/seed-*.toml --pools 'py-*' --python 3.11,3.12,3.13 --start-method fork,forkserver,spawn -j 2

# The flake hunt: the default matrix, scenarios/peers and scenarios/stages with --repeat 5, in
# three machine shapes made here (idle; the harness on one core by taskset; every core busy with
# a CPU hog); an unstable cell (more than one verdict across its repeats) exits 4. Long (hours on
# 2 cores): a scheduled workflow (.github/workflows/flake-hunt.yml). Reports in reports/flake-hunt/.
flake-hunt: build python-setup
    .ci/flake-hunt

# Its short form, for CI: the default matrix with --repeat 2 under the CPU hog (about 10 minutes on 2 cores).
flake-hunt-short: build python-setup
    .ci/flake-hunt --short
