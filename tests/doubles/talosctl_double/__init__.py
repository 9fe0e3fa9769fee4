"""Test double standing in for talosctl v1.13.9 (see cli.py for the contract it honours).

Used only by the project's tests (integration, playbook/molecule tests, benchmark) through the
executable ``tests/doubles/talosctl``; the collection never refers to it. ``state`` holds the
simulated cell and the helpers tests use to declare nodes and inject faults; ``gen`` (owned
separately) implements the offline commands (gen secrets/config, machineconfig patch,
validate, config endpoint/node/info).
"""
