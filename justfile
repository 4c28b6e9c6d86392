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

# The main job: every pool under every fault in every call style, as a table.
chaos: build
    target/release/poolchaos matrix

# Time one no-fault map of 10,000 echo tasks on 2 workers, for each pool.
speed: build
    target/release/poolchaos speed

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
