# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""talos_node_files: the per-node documents of the reference cell, from the one cell model."""

from __future__ import annotations

import copy

import pytest
from ansible.errors import AnsibleFilterError

from ansible_collections.cellplatform.platform.plugins.filter.talos import talos_node_files
from ansible_collections.cellplatform.platform.plugins.module_utils import cell_model as cm
from ansible_collections.cellplatform.platform.tests.unit.plugins.module_utils.test_cell_model import reference_hosts
from ansible_collections.cellplatform.platform.tests.unit.plugins.reference_cell import REFERENCE_VARS


def LOGGING(node):   # noqa: N802 - reads like the document it builds
    """The Talos service-log destination of a node of the reference cell (the L4 log receiver)."""
    return {"endpoint": "tcp://192.168.100.201:5170/", "format": "json_lines",
            "extraTags": {"node": node, "cluster": "cell"}}


@pytest.fixture
def cell():
    hosts = reference_hosts()
    hosts["workers"]["worker-3"]["cellplatform_node_install_disk"] = "/dev/nvme0n1"
    return cm.build_cell_model(copy.deepcopy(REFERENCE_VARS), hosts)


def test_control_plane_documents(cell):
    files = talos_node_files(cell)
    assert [f["path"] for f in files] == ["talos/nodes/%s.yaml" % n for n in
                                          ("cp-1", "cp-2", "cp-3", "worker-1", "worker-2", "worker-3")]
    assert files[0]["documents"] == [
        {"machine": {"logging": {"destinations": [LOGGING("cp-1")]}}},
        {"apiVersion": "v1alpha1", "kind": "HostnameConfig", "auto": "off", "hostname": "cp-1"},
        {"apiVersion": "v1alpha1", "kind": "LinkAliasConfig", "name": "net0",
         "selector": {"match": 'link.driver == "virtio_net"'}},
        {"apiVersion": "v1alpha1", "kind": "LinkConfig", "name": "net0", "up": True, "mtu": 1500,
         "addresses": [{"address": "192.168.100.51/24"}], "routes": [{"gateway": "192.168.100.1"}]},
        {"apiVersion": "v1alpha1", "kind": "Layer2VIPConfig", "name": "192.168.100.50", "link": "net0"},
    ]


def test_workers_have_no_vip_and_their_own_install_disk(cell):
    files = {f["path"]: f["documents"] for f in talos_node_files(cell, "x")}
    kinds = [d.get("kind") for d in files["x/worker-1.yaml"]]
    assert kinds == [None, "HostnameConfig", "LinkAliasConfig", "LinkConfig"]
    # one v1alpha1 document per patch file: the install disk and the log destination together
    assert files["x/worker-3.yaml"][0] == {"machine": {"install": {"disk": "/dev/nvme0n1"},
                                                       "logging": {"destinations": [LOGGING("worker-3")]}}}
    assert "install" not in files["x/worker-1.yaml"][0]["machine"]
    assert all("network" not in d.get("machine", {}) for docs in files.values() for d in docs)


def test_needs_the_cell_model():
    with pytest.raises(AnsibleFilterError, match="expected the cell model"):
        talos_node_files({"name": "cell"})
    with pytest.raises(AnsibleFilterError, match="lacks 'network'"):
        talos_node_files({"nodes": [{"name": "cp-1"}]})


def test_no_log_destination_without_a_receiver(cell):
    cell = dict(cell, observability=None)
    files = {f["path"]: f["documents"] for f in talos_node_files(cell, "x")}
    assert [d.get("kind") for d in files["x/worker-1.yaml"]] == ["HostnameConfig", "LinkAliasConfig", "LinkConfig"]
    assert files["x/worker-3.yaml"][0] == {"machine": {"install": {"disk": "/dev/nvme0n1"}}}
