# poolchaos recipes. `just` lists them.

# List the recipes.
default:
    @just --list

# Build every binary (the harness, the worker, the owner) in release mode.
build:
    cargo build --release --workspace

# Run the test suite (each test in its own process, with leak checks).
test:
    cargo nextest run --workspace

# The main job: every scenario in scenarios/ against its pools, as a table.
chaos: build
    target/release/poolchaos run scenarios

# The matrix again, writing report.md, report.json, junit.xml and runs/ to reports/latest/.
report: build
    target/release/poolchaos run scenarios --out reports/latest

# Review snapshot changes (installs cargo-insta if missing).
snapshots:
    command -v cargo-insta >/dev/null || cargo install cargo-insta --locked
    cargo insta test --test-runner nextest --review

# The quick in-process fault matrix: every pool x self-placed fault x call style.
matrix: build
    target/release/poolchaos matrix

# Time one no-fault map of 10,000 echo tasks on 2 workers, for each pool.
speed: build
    target/release/poolchaos speed

# Say what a scenario does: just explain scenarios/seed-map-sigkill.toml
explain file: build
    target/release/poolchaos explain {{file}}

# Format the code.
fmt:
    cargo fmt --all

# Lint: clippy with warnings as errors.
lint:
    cargo clippy --workspace --all-targets -- -D warnings

# What CI runs: format check, lint, tests, then the main job.
ci:
    cargo fmt --all -- --check
    just lint
    cargo nextest run --workspace --profile ci
    just chaos
