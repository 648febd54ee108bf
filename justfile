# liveagent tasks. `just` lists them.

default:
    @just --list

# Install missing system packages and the protocol validator's venv.
setup:
    scripts/setup.sh

# Set up and run every check and test (what CI runs).
test:
    scripts/test.sh

# Set up and run the demo (offline against the bundled local server unless an API key is set).
demo *ARGS:
    scripts/demo.sh {{ARGS}}

# Run the benchmarks and print their figures (see docs/performance.md).
bench:
    scripts/bench.sh

# Run the local realtime server on 127.0.0.1:8765.
server *ARGS:
    cargo run -q --release -p liveagent-server -- {{ARGS}}

# Format and lint.
lint:
    cargo fmt --all
    cargo clippy --workspace --all-targets -- -D warnings
