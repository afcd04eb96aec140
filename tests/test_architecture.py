"""The import layers of pyproject's [tool.importlinter] contract, checked by pytest as well as
by `lint-imports`: core below the capabilities, below the daemon and the in-server plugin,
below the commands. The graph is read from the source (nothing is imported), in milliseconds.
"""

from __future__ import annotations

import copy
import re
from pathlib import Path

import grimp
import pytest
from importlinter import configuration
from importlinter.application.use_cases import read_user_options
from importlinter.contracts.layers import LayersContract

PYPROJECT = Path(__file__).resolve().parents[1] / "pyproject.toml"


@pytest.fixture(scope="module")
def contract() -> LayersContract:
    configuration.configure()
    options = read_user_options(str(PYPROJECT))
    (layers,) = options.contracts_options
    return LayersContract(name=layers["name"], session_options=options.session_options,
                          contract_options=layers)


@pytest.fixture(scope="module")
def graph(contract: LayersContract) -> grimp.ImportGraph:
    return grimp.build_graph(*contract.session_options["root_packages"], cache_dir=None)


def violations(contract: LayersContract, graph: grimp.ImportGraph) -> list[str]:
    """Each import that goes up a layer, as `importer -> imported (line n)`."""
    check = contract.check(graph, verbose=False)
    if check.kept:
        return []
    return [f"{step['importer']} -> {step['imported']} "
            f"(line {', '.join(map(str, step['line_numbers']))})"
            for dependency in check.metadata["invalid_dependencies"]
            for route in dependency["routes"] for step in route["chain"]]


def test_the_import_layers_hold(contract, graph):
    assert violations(contract, graph) == []


def test_every_package_of_guard_is_in_a_layer(contract, graph):
    """A new top-level module or folder must be given its place, or it would go unchecked."""
    named = {name.strip() for layer in contract.contract_options["layers"]
             for name in re.split(r"[|:]", layer)}
    assert graph.find_children("guard") <= named


def test_an_import_up_a_layer_is_caught(contract, graph):
    """The check above can fail: core importing the daemon, a capability importing the plugin."""
    bad = copy.deepcopy(graph)
    bad.add_import(importer="guard.core.paths", imported="guard.daemon.loop", line_number=7,
                   line_contents="from guard.daemon.loop import Daemon")
    bad.add_import(importer="guard.supervision.server", imported="guard.app", line_number=9,
                   line_contents="from guard.app import Sanctions")
    assert set(violations(contract, bad)) - set(violations(contract, graph)) == {
        "guard.core.paths -> guard.daemon.loop (line 7)",
        "guard.supervision.server -> guard.app (line 9)",
    }
