# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""module_utils/cell_model.py: the cell model and the validation rules (pure, in-process)."""

from __future__ import annotations

import copy
import os

import pytest

from ansible_collections.cellplatform.platform.plugins.module_utils import cell_model as cm
from ansible_collections.cellplatform.platform.tests.unit.plugins.reference_cell import REFERENCE_VARS, SCHEMATIC

AGE_KEY = "age1jrt4wcqq6sc0gexnntep0xecwky60ugk0euv67me6xm7c7me7udq7r0003"


L2_VARS = ("cellplatform_gitops", "cellplatform_argocd_domain", "cellplatform_policy_mode", "cellplatform_linkerd")
L1_VARS = ("cellplatform_external_dns", "cellplatform_karpenter", "cellplatform_tls")


def reference_hosts():
    return {
        "controlplane": {"cp-1": {"cellplatform_node_ip": "192.168.100.51"},
                         "cp-2": {"cellplatform_node_ip": "192.168.100.52"},
                         "cp-3": {"cellplatform_node_ip": "192.168.100.53"}},
        "workers": {"worker-1": {"cellplatform_node_ip": "192.168.100.61"},
                    "worker-2": {"cellplatform_node_ip": "192.168.100.62"},
                    "worker-3": {"cellplatform_node_ip": "192.168.100.63"}},
        "cell": ["cp-1", "cp-2", "cp-3", "worker-1", "worker-2", "worker-3"],
    }


@pytest.fixture
def ref():
    return copy.deepcopy(REFERENCE_VARS), reference_hosts()


def fields(problems):
    return [p["field"] for p in problems]


# --------------------------------------------------------------------------------------------
# The model
# --------------------------------------------------------------------------------------------

def test_reference_is_clean(ref):
    assert cm.validate(*ref) == []


def test_model_of_the_reference_cell(ref):
    cell = cm.build_cell_model(*ref)
    assert cell["name"] == "cell"
    assert cell["mode"] == "render"
    assert cell["build_dir"] == os.path.join(os.path.realpath("/srv/repo/build"), "cell")
    assert cell["secrets_dir"] == os.path.realpath("/srv/repo/inventories/production/secrets")
    assert cell["secrets"] == {
        "config": cell["secrets_dir"] + "/.sops.yaml", "platform": cell["secrets_dir"] + "/platform.sops.yaml",
        "talos": cell["secrets_dir"] + "/talos-secrets.sops.yaml",
        "talosconfig": cell["secrets_dir"] + "/talosconfig.sops.yaml",
        "kubeconfig": cell["secrets_dir"] + "/kubeconfig.sops.yaml"}
    assert cell["network"] == {
        "cidr": "192.168.100.0/24", "prefixlen": 24, "gateway": "192.168.100.1", "nameservers": ["192.168.100.1"],
        "ntp_servers": ["192.168.100.1"], "search_domains": ["cell.lan"], "mtu": 1500,
        "link_selector": 'link.driver == "virtio_net"'}
    assert cell["api"] == {"vip": "192.168.100.50", "port": 6443, "endpoint": "https://192.168.100.50:6443",
                           "dns_name": "api.cell.lan", "cert_sans": ["192.168.100.50", "api.cell.lan"]}
    assert cell["lb_pool"] == {"start": "192.168.100.200", "end": "192.168.100.250",
                               "range": "192.168.100.200-192.168.100.250", "size": 51}
    assert cell["pod_cidr"] == "10.244.0.0/16"
    assert cell["service_cidr"] == "10.96.0.0/16"
    assert cell["talos"] == {
        "version": "v1.13.9", "contract": "v1.13", "kubernetes_version": "1.36.3", "platform": "nocloud",
        "schematic_id": SCHEMATIC,
        "installer_image": "factory.talos.dev/nocloud-installer/%s:v1.13.9" % SCHEMATIC,
        "schematic_extensions": ["siderolabs/qemu-guest-agent", "siderolabs/iscsi-tools", "siderolabs/util-linux-tools"],
        "install_disk": "/dev/sda"}
    assert cell["nodes"][0] == {"name": "cp-1", "ip": "192.168.100.51", "address": "192.168.100.51/24",
                                "role": "controlplane", "install_disk": "/dev/sda", "vm_id": 151}
    assert cell["nodes"][3] == {"name": "worker-1", "ip": "192.168.100.61", "address": "192.168.100.61/24",
                                "role": "worker", "install_disk": "/dev/sda", "vm_id": 161}
    assert cell["controlplane"] == ["cp-1", "cp-2", "cp-3"]
    assert cell["workers"] == ["worker-1", "worker-2", "worker-3"]
    assert cell["bootstrap_node"] == "cp-1"
    assert cell["talos_endpoints"] == ["192.168.100.51", "192.168.100.52", "192.168.100.53"]
    assert "192.168.100.50" not in cell["talos_endpoints"]
    assert sorted(cell) == sorted(["name", "mode", "build_dir", "secrets_dir", "secrets", "network", "api", "lb_pool", "pod_cidr",
                                   "service_cidr", "talos", "nodes", "controlplane", "workers", "bootstrap_node",
                                   "talos_endpoints", "cluster_dns_domain",
                                   # run settings and the inputs of the layers above, for the roles
                                   "work_dir", "plaintext_dir", "kubeconfig", "age", "provisioner",
                                   "terraform_allow_destroy",
                                   "proxmox", "node_sizes", "dns_domain", "external_dns", "metallb", "karpenter",
                                   "gitops", "argocd_domain", "policy_mode", "linkerd",
                                   # storage, the shared Gateway and TLS
                                   "storage", "gateway", "tls",
                                   # L3 delivery
                                   "gitea", "harbor", "image_policy",
                                   # observability and the reserved LoadBalancer addresses
                                   "observability", "lb_reserved",
                                   # the day-2 playbooks' inputs
                                   "upgrade",
                                   # security (L6)
                                   "security",
                                   # L7 developer portal
                                   "backstage",
                                   # resilience (L5)
                                   "resilience",
                                   # the optional node firewall (off)
                                   "node_firewall"])
    assert cell["security"] == {"admin_groups": ["platform-admins"], "operator_groups": ["platform-operators"],
                                "teams": [{"name": "shop", "groups": ["shop-developers"], "namespaces": ["shop"]}]}
    assert cell["backstage"] == {
        "image": {"registry": "harbor.cell.lan", "repository": "ci/backstage", "tag": "1.0.0", "digest": "",
                  "reference": "harbor.cell.lan/ci/backstage:1.0.0"},
        "database": {"instances": 2, "storage_gib": 5}}


def test_model_is_deterministic(ref):
    assert cm.build_cell_model(*ref) == cm.build_cell_model(*copy.deepcopy(ref))


def test_control_planes_first_then_workers_in_inventory_order(ref):
    variables, hosts = ref
    hosts["workers"] = {"worker-b": {"cellplatform_node_ip": "192.168.100.70"},
                        "worker-a": {"cellplatform_node_ip": "192.168.100.65"}}
    hosts["controlplane"] = {"cp-z": {"cellplatform_node_ip": "192.168.100.59"}}
    variables["cellplatform_storage"]["longhorn"]["replicas"] = 2    # two workers hold the replicas
    # a dict given workers first still yields control planes first
    ordered = {"workers": hosts["workers"], "controlplane": hosts["controlplane"]}
    assert cm.validate(variables, ordered) == []
    cell = cm.build_cell_model(variables, ordered)
    assert [n["name"] for n in cell["nodes"]] == ["cp-z", "worker-b", "worker-a"]
    assert cell["bootstrap_node"] == "cp-z"


def test_per_node_overrides(ref):
    variables, hosts = ref
    hosts["workers"]["worker-2"]["cellplatform_node_install_disk"] = "/dev/nvme0n1"
    hosts["workers"]["worker-3"]["cellplatform_node_vm_id"] = 9001
    assert cm.validate(variables, hosts) == []
    nodes = {n["name"]: n for n in cm.build_cell_model(variables, hosts)["nodes"]}
    assert nodes["worker-2"]["install_disk"] == "/dev/nvme0n1"
    assert nodes["worker-1"]["install_disk"] == "/dev/sda"
    assert nodes["worker-3"]["vm_id"] == 9001
    assert nodes["worker-2"]["vm_id"] == 162


def test_vm_id_base_and_talos_1_14(ref):
    variables, hosts = ref
    variables["cellplatform_proxmox"]["vm_id_base"] = 1000
    variables["cellplatform_talos_version"] = "v1.14.2"
    variables["cellplatform_kubernetes_version"] = "1.37.1"
    assert cm.validate(variables, hosts) == []
    cell = cm.build_cell_model(variables, hosts)
    assert [n["vm_id"] for n in cell["nodes"]] == [1051, 1052, 1053, 1061, 1062, 1063]
    assert cell["talos"]["contract"] == "v1.14"
    assert cell["talos"]["installer_image"].endswith(":v1.14.2")


def test_build_dir_resolves_symlinks(tmp_path, ref):
    variables, hosts = ref
    real = tmp_path / "real"
    real.mkdir()
    (tmp_path / "link").symlink_to(real)
    variables["cellplatform_build_root"] = str(tmp_path / "link" / "sub" / "..")
    variables["cellplatform_secrets_dir"] = str(tmp_path / "link")
    cell = cm.build_cell_model(variables, hosts)
    assert cell["build_dir"] == str(real / "cell")
    assert cell["secrets_dir"] == str(real)
    assert sorted(os.listdir(str(real))) == []  # nothing created


def test_mode_override(ref):
    variables, hosts = ref
    assert fields(cm.validate(variables, hosts, mode="apply")) == ["cellplatform_age_recipients"]
    variables["cellplatform_age_recipients"] = [AGE_KEY]
    assert cm.validate(variables, hosts, mode="apply") == []
    assert cm.build_cell_model(variables, hosts, mode="apply")["mode"] == "apply"
    assert fields(cm.validate(variables, hosts, mode="deploy")) == ["cellplatform_mode"]


def test_provisioner_none_needs_no_proxmox(ref):
    variables, hosts = ref
    variables["cellplatform_provisioner"] = "none"
    variables["cellplatform_talos_platform"] = "metal"
    del variables["cellplatform_proxmox"]
    del variables["cellplatform_node_sizes"]
    # Karpenter creates VMs through the Proxmox API: bare metal has none (checked with L1 only)
    assert fields(cm.validate(variables, hosts)) == ["cellplatform_karpenter.enabled"]
    assert cm.validate(variables, hosts, layers=["l0"]) == []
    variables["cellplatform_karpenter"] = {"enabled": False}
    assert cm.validate(variables, hosts) == []
    cell = cm.build_cell_model(variables, hosts)
    assert cell["proxmox"] is None
    assert cell["nodes"][0]["vm_id"] is None
    assert cell["talos"]["installer_image"].startswith("factory.talos.dev/metal-installer/")


# --------------------------------------------------------------------------------------------
# Layers
# --------------------------------------------------------------------------------------------

def test_l0_only_does_not_need_l1_l2_variables(ref):
    variables, hosts = ref
    for name in L1_VARS + L2_VARS:
        if name != "cellplatform_gitops":
            del variables[name]
    assert cm.validate(variables, hosts, layers=["l0"]) == []
    assert fields(cm.validate(variables, hosts, layers=["l0", "l2"])) == [v for v in L2_VARS if v != "cellplatform_gitops"]
    assert fields(cm.validate(variables, hosts, layers=["l1"])) == [
        "cellplatform_karpenter", "cellplatform_external_dns", "cellplatform_tls"]
    assert len(cm.validate(variables, hosts)) == 6


def test_every_layer_needs_the_gitops_repository(ref):
    # L0 and L1 render an Argo CD Application per component too.
    variables, hosts = ref
    del variables["cellplatform_gitops"]
    for layers in (["l0"], ["l0", "l1"], ["l0", "l1", "l2"]):
        assert fields(cm.validate(variables, hosts, layers=layers)) == ["cellplatform_gitops"]


def test_l0_only_still_checks_a_set_karpenter_range(ref):
    variables, hosts = ref
    variables["cellplatform_karpenter"]["address_range"] = {"start": "192.168.100.40", "end": "192.168.100.60"}
    variables["cellplatform_policy_mode"] = "not a mode"  # an L2-only setting: not checked for l0
    problems = cm.validate(variables, hosts, layers=["l0"])
    # node .51-.53 and the VIP inside it, and its largest aligned block (.48/29) under max_nodes
    assert fields(problems) == ["cellplatform_karpenter.address_range"] * 5
    assert "the API VIP" in problems[-1]["message"]


def test_l1_l2_problems_only_when_selected(ref):
    variables, hosts = ref
    variables["cellplatform_policy_mode"] = "warn"
    variables["cellplatform_external_dns"]["policy"] = "delete"
    assert cm.validate(variables, hosts, layers=["l0"]) == []
    assert fields(cm.validate(variables, hosts, layers=["l1"])) == ["cellplatform_external_dns.policy"]
    assert fields(cm.validate(variables, hosts, layers=["l2"])) == ["cellplatform_policy_mode"]


def test_karpenter_disabled_skips_its_checks(ref):
    variables, hosts = ref
    variables["cellplatform_karpenter"] = {"enabled": False, "max_nodes": "lots"}
    assert cm.validate(variables, hosts) == []


# --------------------------------------------------------------------------------------------
# Messages
# --------------------------------------------------------------------------------------------

def test_problem_shape_and_numbered_message(ref):
    variables, hosts = ref
    variables["cellplatform_api_vip"] = "192.168.100.61"
    variables["cellplatform_api_port"] = True
    problems = cm.validate(variables, hosts)
    assert problems == [
        {"field": "cellplatform_api_vip", "value": "192.168.100.61",
         "message": "cellplatform_api_vip: 192.168.100.61 is also the address of node worker-1",
         "fix": "pick a free address in 192.168.100.0/24 outside the LoadBalancer pool, e.g. 192.168.100.2."},
        {"field": "cellplatform_api_port", "value": True,
         "message": "cellplatform_api_port: true must be an integer, not a boolean",
         "fix": "set an integer between 1 and 65535 (a YAML number, without quotes)."},
    ]
    text = cm.format_problems(problems)
    assert text.splitlines() == [
        "Preflight found 2 problems in the inventory (nothing was changed):",
        "1. cellplatform_api_vip: 192.168.100.61 is also the address of node worker-1. Fix: pick a free address in "
        "192.168.100.0/24 outside the LoadBalancer pool, e.g. 192.168.100.2.",
        "2. cellplatform_api_port: true must be an integer, not a boolean. Fix: set an integer between 1 and 65535 "
        "(a YAML number, without quotes).",
    ]


def test_free_address_suggestion_skips_used_and_pool(ref):
    variables, hosts = ref
    variables["cellplatform_network"]["cidr"] = "192.168.100.0/29"
    variables["cellplatform_network"]["gateway"] = "192.168.100.1"
    variables["cellplatform_lb_pool"] = {"start": "192.168.100.5", "end": "192.168.100.5"}
    variables["cellplatform_api_vip"] = "192.168.100.3"
    variables["cellplatform_gateway"]["address"] = "192.168.100.5"
    variables["cellplatform_storage"]["longhorn"]["replicas"] = 1
    hosts = {"controlplane": {"cp-1": {"cellplatform_node_ip": "192.168.100.3"}},
             "workers": {"worker-1": {"cellplatform_node_ip": "192.168.100.2"}}}
    del variables["cellplatform_karpenter"]
    del variables["cellplatform_observability"]   # its log receiver would need a second pool address
    problems = cm.validate(variables, hosts, layers=["l0"])
    assert fields(problems) == ["cellplatform_api_vip"]
    assert problems[0]["fix"].endswith("e.g. 192.168.100.4.")


def test_every_problem_at_once_in_a_broken_inventory(ref):
    variables, hosts = ref
    variables.update({"cellplatform_cell_name": "", "cellplatform_api_port": 0, "cellplatform_pod_cidr": "x",
                      "cellplatform_mode": None, "cellplatform_linkerd": []})
    hosts["workers"]["worker-1"] = {}
    problems = cm.validate(variables, hosts)
    assert fields(problems) == ["cellplatform_cell_name", "cellplatform_mode", "worker-1.cellplatform_node_ip",
                                "cellplatform_api_port", "cellplatform_pod_cidr", "cellplatform_linkerd"]
    assert all(p["fix"] for p in problems)


@pytest.mark.parametrize("value,ok", [
    ("cp-1", True), ("a", True), ("a" * 63, True), ("a" * 64, False), ("-cp", False), ("cp-", False),
    ("CP-1", False), ("cp_1", False), ("cp.1", False), ("", False), (1, False),
])
def test_dns_label(value, ok):
    assert cm.is_dns_label(value) is ok


@pytest.mark.parametrize("value,ok", [
    ("cell.lan", True), ("a.b.c", True), ("cell.lan.", False), ("Cell.lan", False), ("a..b", False),
    (".".join(["a" * 63] * 4), False), ("x" * 10, True),
])
def test_dns_name(value, ok):
    assert cm.is_dns_name(value) is ok


def test_age_recipient_checksum():
    assert cm.is_age_recipient(AGE_KEY)
    flipped = AGE_KEY[:20] + ("q" if AGE_KEY[20] != "q" else "p") + AGE_KEY[21:]
    assert not cm.is_age_recipient(flipped)
    assert not cm.is_age_recipient(AGE_KEY.upper())
    assert not cm.is_age_recipient(AGE_KEY[:-1])


def test_bad_age_checksum_is_reported(ref):
    variables, hosts = ref
    variables["cellplatform_age_recipients"] = [AGE_KEY, AGE_KEY[:-1] + ("q" if AGE_KEY[-1] != "q" else "p")]
    problems = cm.validate(variables, hosts)
    assert fields(problems) == ["cellplatform_age_recipients[1]"]
    assert "bad bech32 checksum" in problems[0]["message"]


@pytest.mark.parametrize("url,ok", [
    ("https://gitea.cell.lan/platform/cell.git", True),
    ("ssh://git@gitea.cell.lan:2222/platform/cell.git", True),
    ("git@gitea.cell.lan:platform/cell.git", True),
    ("https://gitea.cell.lan/", False),
    ("https://gitea.cell.lan", False),
    ("ssh://git@gitea.cell.lan:99999/x.git", False),
    ("git@:platform/cell.git", False),
    ("file:///srv/git/cell.git", False),
    ("https://gitea cell.lan/x.git", False),
])
def test_gitops_urls(ref, url, ok):
    variables, hosts = ref
    variables["cellplatform_gitea"]["hosted_gitops"] = False   # any Git URL, not only this cell's Gitea
    variables["cellplatform_gitops"]["repo_url"] = url
    # (L7 reads its catalog from the GitOps repository in Gitea: tests/playbooks/inventories/l7_gitops_not_in_gitea.yml)
    assert (cm.validate(variables, hosts, layers=["l0", "l1", "l2", "l3"]) == []) is ok


def test_pdns_provider_ignores_rfc2136_block(ref):
    variables, hosts = ref
    variables["cellplatform_external_dns"]["provider"] = "pdns"
    variables["cellplatform_external_dns"]["rfc2136"] = "unused"
    assert cm.validate(variables, hosts) == []
    variables["cellplatform_external_dns"]["pdns"]["server"] = "ftp://192.168.100.1"
    assert fields(cm.validate(variables, hosts)) == ["cellplatform_external_dns.pdns.server"]


def test_zone_may_be_a_parent_and_filters_subdomains(ref):
    variables, hosts = ref
    variables["cellplatform_external_dns"]["rfc2136"]["zone"] = "lan"
    variables["cellplatform_external_dns"]["domain_filters"] = ["apps.cell.lan", "cell.lan"]
    assert cm.validate(variables, hosts) == []
    variables["cellplatform_external_dns"]["rfc2136"]["zone"] = "apps.cell.lan"
    problems = cm.validate(variables, hosts)
    assert [p["message"] for p in problems] == [
        "cellplatform_external_dns.rfc2136.zone: apps.cell.lan is not equal to or a parent of domain filter cell.lan"]


def test_even_and_single_control_plane(ref):
    variables, hosts = ref
    hosts["controlplane"] = {"cp-1": {"cellplatform_node_ip": "192.168.100.51"}}
    hosts["cell"] = ["cp-1", "worker-1", "worker-2", "worker-3"]
    assert cm.validate(variables, hosts) == []
    hosts["controlplane"]["cp-2"] = {"cellplatform_node_ip": "192.168.100.52"}
    hosts["controlplane"]["cp-3"] = {"cellplatform_node_ip": "192.168.100.53"}
    hosts["controlplane"]["cp-4"] = {"cellplatform_node_ip": "192.168.100.54"}
    hosts["cell"] += ["cp-2", "cp-3", "cp-4"]
    problems = cm.validate(variables, hosts)
    assert fields(problems) == ["groups.controlplane"]
    assert problems[0]["fix"] == "use 3 or 5 control-plane nodes."


def test_host_in_cell_but_no_child_group(ref):
    variables, hosts = ref
    hosts["cell"].append("stray")
    problems = cm.validate(variables, hosts)
    assert [p["message"] for p in problems] == [
        "inventory host stray: stray is in group cell but in neither controlplane nor workers"]


def test_extra_vars_integer_given_as_text_is_accepted(ref):
    # `ansible-playbook -e cellplatform_api_port=6443` always passes a string.
    variables, hosts = ref
    variables["cellplatform_api_port"] = "6443"
    assert cm.validate(variables, hosts) == []
    assert cm.build_cell_model(variables, hosts)["api"]["endpoint"] == "https://192.168.100.50:6443"


def test_fix_examples_come_from_the_users_network_not_the_reference_cell(ref):
    variables, hosts = ref
    variables["cellplatform_network"] = dict(variables["cellplatform_network"], cidr="10.20.0.0/16")
    del variables["cellplatform_network"]["gateway"]
    fixes = {p["field"]: p["fix"] for p in cm.validate(variables, hosts)}
    assert fixes["cellplatform_network.gateway"] == "set the default gateway of the node network, e.g. 10.20.0.1."
    # Before any network is known, examples use the RFC 5737 documentation range.
    variables["cellplatform_network"] = dict(variables["cellplatform_network"], cidr=None)
    fixes = {p["field"]: p["fix"] for p in cm.validate(variables, hosts)}
    assert fixes == {"cellplatform_network.cidr": "set a network in CIDR notation, e.g. 192.0.2.0/24.",
                     "cellplatform_network.gateway": "set the default gateway of the node network, e.g. 192.0.2.1."}


# --- the one cell model every role reads --------------------------------------------------------

def test_model_carries_every_layers_inputs_normalised(ref, monkeypatch):
    variables, hosts = ref
    monkeypatch.setenv("HOME", "/home/op")
    cell = cm.build_cell_model(variables, hosts)
    assert cell["work_dir"] == "/home/op/.cache/cellplatform/cell"
    assert cell["plaintext_dir"] == "/home/op/.cache/cellplatform/cell/plaintext"
    assert cell["kubeconfig"] == {"path": "/home/op/.cache/cellplatform/cell/plaintext/kubeconfig", "managed": True}
    assert cell["age"] == {"recipients": [], "identity": "/home/op/.config/sops/age/keys.txt"}
    assert cell["gitops"]["project"] == "platform" and cell["gitops"]["namespace"] == "argocd"
    assert cell["gitops"]["repo_url"] == variables["cellplatform_gitops"]["repo_url"]
    assert cell["provisioner"] == "proxmox" and cell["proxmox"]["node_name"] == "pve1"
    assert cell["cluster_dns_domain"] == "cluster.local" and cell["policy_mode"] == "audit"
    assert cell["metallb"] == {"bgp": False} and cell["terraform_allow_destroy"] is False
    assert cell["karpenter"]["ipam"] == {
        "range": "192.168.100.100-192.168.100.149", "subnet": "192.168.100.112/28", "addresses": 16,
        "gateway": "192.168.100.1", "ipconfig0": "ip=192.168.100.112/28,gw=192.168.100.1"}
    # the model is a copy: changing it does not change the inventory data
    cell["external_dns"]["policy"] = "sync"
    assert variables["cellplatform_external_dns"]["policy"] != "sync"


def test_user_kubeconfig_is_used_as_given_and_never_managed(ref):
    variables, hosts = ref
    variables.update(cellplatform_kubeconfig="/etc/cell/admin.conf", cellplatform_work_dir="/run/cell",
                     cellplatform_terraform_allow_destroy="true", cellplatform_metallb_bgp=True,
                     cellplatform_gitops=dict(variables["cellplatform_gitops"], project="cells"))
    assert cm.validate(variables, hosts) == []
    cell = cm.build_cell_model(variables, hosts)
    assert cell["kubeconfig"] == {"path": "/etc/cell/admin.conf", "managed": False}
    assert cell["work_dir"] == "/run/cell" and cell["terraform_allow_destroy"] is True
    assert cell["metallb"]["bgp"] is True and cell["gitops"]["project"] == "cells"


@pytest.mark.parametrize("name,value,message", [
    ("cellplatform_work_dir", 7, "cellplatform_work_dir: 7 must be a string, not an integer"),
    ("cellplatform_kubeconfig", "", 'cellplatform_kubeconfig: "" must not be empty'),
    ("cellplatform_terraform_allow_destroy", "perhaps", "cellplatform_terraform_allow_destroy: perhaps must be a boolean, not a string"),
    ("cellplatform_metallb_bgp", "yes please", "cellplatform_metallb_bgp: yes please must be a boolean, not a string"),
])
def test_optional_run_settings_are_checked(ref, name, value, message):
    variables, hosts = ref
    variables[name] = value
    assert message in [p["message"] for p in cm.validate(variables, hosts)]


def test_karpenter_range_whose_aligned_block_is_too_small_is_caught_in_preflight(ref):
    variables, hosts = ref
    # 30 addresses, but the largest aligned block inside .101-.130 is a /28 (16 addresses)
    variables["cellplatform_karpenter"] = dict(variables["cellplatform_karpenter"], max_nodes=20,
                                               address_range={"start": "192.168.100.101", "end": "192.168.100.130"})
    problems = [p for p in cm.validate(variables, hosts) if p["field"] == "cellplatform_karpenter.address_range"]
    assert len(problems) == 1
    assert "largest CIDR-aligned block (the subnet Karpenter's simple IPAM allocates from)" in problems[0]["message"]
    assert "192.168.100.112/28" in problems[0]["message"] and "fewer than max_nodes 20" in problems[0]["message"]
    assert "a whole /27" in problems[0]["fix"]


@pytest.mark.parametrize("start,end,block", [
    ("10.0.0.0", "10.0.0.255", "10.0.0.0/24"),
    ("10.0.0.1", "10.0.0.254", "10.0.0.64/26"),
    ("10.0.0.7", "10.0.0.7", "10.0.0.7/32"),
    ("10.0.0.100", "10.0.0.149", "10.0.0.112/28"),
])
def test_karpenter_ipam_block(start, end, block):
    assert str(cm.karpenter_ipam_block(cm.parse_ip(start), cm.parse_ip(end))) == block


def test_one_layer_list():
    assert cm.LAYERS == ("l0", "l1", "l2", "l3", "l4", "l5", "l6", "l7")
    assert dict(cm.LAYER_TITLES)["l5"] == "L5 resilience"


# --- storage, the shared Gateway and TLS ----------------------------------------------------------

@pytest.mark.parametrize("extensions,args,expected", [
    # IDs the Image Factory gives (siderolabs/image-factory pkg/schematic tests and the platform brief)
    ([], [], "376567988ad370138ad8b2698212367b8edcb69b5fd68c80be1f2ec7d603b4ba"),
    (["siderolabs/qemu-guest-agent"], [], "ce4c980550dd2ab1b17bbf2b08801c7eb59418eafe8f279833297925d67c7515"),
    ([], ["noapic", "nolapic"], "9cba8e32753f91a16c1837ab8abf356af021706ef284aef07380780177d9a06c"),
    (["siderolabs/qemu-guest-agent", "siderolabs/iscsi-tools", "siderolabs/util-linux-tools"], [], SCHEMATIC),
])
def test_schematic_id_is_the_image_factory_id(extensions, args, expected):
    assert cm.schematic_id(extensions, args) == expected


def test_schematic_id_depends_on_order_and_gives_up_on_quoted_values():
    exts = ["siderolabs/iscsi-tools", "siderolabs/util-linux-tools"]
    assert cm.schematic_id(exts) != cm.schematic_id(list(reversed(exts)))
    # go-yaml would quote these: the ID is not reproduced, and the preflight does not guess
    assert cm.schematic_id(exts, ["true"]) is None
    assert cm.schematic_id(exts, ["8080"]) is None
    assert cm.schematic_id(exts, ["a: b"]) is None


def test_schematic_with_unreproducible_args_is_not_compared(ref):
    variables, hosts = ref
    variables["cellplatform_talos_schematic"]["extra_kernel_args"] = ["yes"]
    assert cm.validate(variables, hosts, layers=["l0"]) == []


def test_storage_gateway_and_tls_sections_of_the_reference_cell(ref):
    cell = cm.build_cell_model(*ref)
    assert cell["storage"] == {
        "provider": "longhorn", "class_name": "longhorn",
        "volume": {"name": "longhorn", "type": "partition", "path": "/var/mnt/longhorn",
                   "disk_selector": "!system_disk", "min_size_gib": 50, "max_size_gib": None},
        "longhorn": {"replicas": 3, "reserved_percent": 10}}
    assert cell["gateway"] == {
        "name": "platform", "namespace": "gateway", "address": "192.168.100.200", "class_name": "cilium",
        "https_listener": "https", "http_listener": "http", "hostname": "*.cell.lan",
        "auto_assign_ranges": ["192.168.100.201-192.168.100.250"]}
    assert cell["tls"] == {"issuer": "internal-ca", "cluster_issuer": "cellplatform-ca", "acme": None,
                           "ca": {"lifetime_days": 3650}}
    assert cell["node_sizes"]["worker"]["data_disk_gib"] == 100


def test_local_path_on_a_directory_needs_no_data_disk(ref):
    variables, hosts = ref
    variables["cellplatform_storage"] = {"provider": "local-path", "volume": {"type": "directory"}}
    del variables["cellplatform_node_sizes"]["worker"]["data_disk_gib"]
    variables["cellplatform_talos_schematic"]["extensions"] = ["siderolabs/qemu-guest-agent"]
    variables["cellplatform_talos_schematic_id"] = cm.schematic_id(["siderolabs/qemu-guest-agent"])
    assert cm.validate(variables, hosts) == []
    storage = cm.build_cell_model(variables, hosts)["storage"]
    assert storage == {"provider": "local-path", "class_name": "local-path", "longhorn": None,
                       "volume": {"name": "local-path-provisioner", "type": "directory",
                                  "path": "/var/mnt/local-path-provisioner"}}


def test_bare_metal_partition_needs_no_terraform_disk(ref):
    variables, hosts = ref
    variables["cellplatform_provisioner"] = "none"
    del variables["cellplatform_node_sizes"]["worker"]["data_disk_gib"]
    assert cm.validate(variables, hosts, layers=["l0"]) == []


@pytest.mark.parametrize("address,ranges", [
    ("192.168.100.200", ["192.168.100.201-192.168.100.250"]),
    ("192.168.100.220", ["192.168.100.200-192.168.100.219", "192.168.100.221-192.168.100.250"]),
    ("192.168.100.250", ["192.168.100.200-192.168.100.249"]),
])
def test_gateway_address_is_reserved_from_the_auto_assigned_pool(ref, address, ranges):
    variables, hosts = ref
    variables["cellplatform_gateway"] = {"address": address, "name": "edge", "namespace": "ingress"}
    assert cm.validate(variables, hosts) == []
    gateway = cm.build_cell_model(variables, hosts)["gateway"]
    assert gateway["auto_assign_ranges"] == ranges
    assert (gateway["name"], gateway["namespace"], gateway["address"]) == ("edge", "ingress", address)


def test_acme_issuer_uses_the_external_dns_server_and_key(ref):
    variables, hosts = ref
    variables["cellplatform_tls"]["issuer"] = "acme"
    assert cm.validate(variables, hosts) == []
    tls = cm.build_cell_model(variables, hosts)["tls"]
    assert tls["cluster_issuer"] == "cellplatform-acme" and tls["ca"] is None
    assert tls["acme"] == {"server": "https://acme-v02.api.letsencrypt.org/directory", "email": "platform@cell.lan",
                           "nameserver": "192.168.100.1:53", "nameserver_cidr": "192.168.100.1/32",
                           "zone": "cell.lan", "tsig_keyname": "externaldns-key",
                           "tsig_algorithm": "HMACSHA256"}
    variables["cellplatform_external_dns"]["rfc2136"].update(host="fd00::53", port=5353)
    acme = cm.build_cell_model(variables, hosts)["tls"]["acme"]
    assert (acme["nameserver"], acme["nameserver_cidr"]) == ("[fd00::53]:5353", "fd00::53/128")
    variables["cellplatform_external_dns"]["rfc2136"]["host"] = "ns1.cell.lan"
    acme = cm.build_cell_model(variables, hosts)["tls"]["acme"]
    assert (acme["nameserver"], acme["nameserver_cidr"]) == ("ns1.cell.lan:5353", None)


def test_tls_is_an_l1_input_and_ui_names_an_l2_check(ref):
    variables, hosts = ref
    variables["cellplatform_tls"] = {"issuer": "self-signed"}
    variables["cellplatform_argocd_domain"] = "argocd.example.org"
    assert cm.validate(variables, hosts, layers=["l0"]) == []
    assert fields(cm.validate(variables, hosts, layers=["l1"])) == ["cellplatform_tls.issuer"]
    assert fields(cm.validate(variables, hosts, layers=["l2"])) == ["cellplatform_argocd_domain"]


# --------------------------------------------------------------------------------------------
# L3 delivery: Gitea, Harbor, the image policy
# --------------------------------------------------------------------------------------------

L3_VARS = ("cellplatform_gitea", "cellplatform_harbor", "cellplatform_image_policy")


def test_l3_inputs_are_required_only_when_l3_is_selected(ref):
    variables, hosts = ref
    for name in L3_VARS:
        del variables[name]
    assert cm.validate(variables, hosts, layers=["l0", "l1", "l2"]) == []
    assert fields(cm.validate(variables, hosts, layers=["l3"])) == list(L3_VARS)
    cell = cm.build_cell_model(variables, hosts)
    assert cell["gitea"] is None and cell["harbor"] is None and cell["image_policy"] == "audit"


def test_l3_model_fills_defaults_and_finds_the_hosted_repository(ref):
    variables, hosts = ref
    variables["cellplatform_gitea"] = {"admin_user": "ops", "admin_email": "ops@cell.lan", "hosted_gitops": True}
    variables["cellplatform_harbor"] = {"proxy_caches": [{"name": "ghcr", "type": "github-ghcr", "url": "https://ghcr.io/"}]}
    variables["cellplatform_image_policy"] = "enforce"
    assert cm.validate(variables, hosts) == []
    cell = cm.build_cell_model(variables, hosts)
    assert cell["gitea"] == {"host": "gitea", "hosted_gitops": True, "gitops_repo": {"org": "platform", "name": "cell"},
                             "admin_user": "ops", "admin_email": "ops@cell.lan", "storage_gib": 20,
                             "database": {"instances": 2, "storage_gib": 10}}
    assert cell["harbor"] == {"ci_project": "ci", "proxy_caches": [{"name": "ghcr", "type": "github-ghcr",
                                                                    "url": "https://ghcr.io"}],
                              "storage": {"jobservice_gib": 1, "redis_gib": 1, "registry_gib": 50, "trivy_gib": 5},
                              "database": {"instances": 2, "storage_gib": 10}}
    assert cell["image_policy"] == "enforce"
    # an external repository is never treated as hosted
    variables["cellplatform_gitea"]["hosted_gitops"] = False
    assert cm.build_cell_model(variables, hosts)["gitea"]["gitops_repo"] is None


@pytest.mark.parametrize("url, expected", [
    ("https://gitea.cell.lan/platform/cell.git", ("platform", "cell")),
    ("https://gitea.cell.lan/platform/cell", ("platform", "cell")),
    ("https://gitea.cell.lan/platform/cell.git/", ("platform", "cell")),
    ("https://gitea.cell.lan:8443/platform/cell.git", None),
    ("https://gitea.example.org/platform/cell.git", None),
    ("https://gitea.cell.lan/platform/sub/cell.git", None),
    ("git@gitea.cell.lan:platform/cell.git", None),
])
def test_hosted_gitops_repository_url(url, expected):
    assert cm.hosted_gitops_repo(url, "cell.lan") == expected


@pytest.mark.parametrize("name, problem", [
    ("gitea-admin", None), ("ops.team_1", None), ("Admin", "reserves"), ("api", "reserves"), ("-ops", "valid"),
    ("ops-", "valid"), ("a--b", "valid"), ("a" * 41, "valid"), ("ops team", "valid"),
])
def test_gitea_names(name, problem):
    found = cm.gitea_name_problem(name)
    assert (found is None) if problem is None else (problem in found)


def test_l3_problems_all_at_once_with_fixes(ref):
    variables, hosts = ref
    variables["cellplatform_gitea"]["database"] = {"instances": 0, "size": 5}
    variables["cellplatform_harbor"]["proxy_caches"] = [{"name": "q", "type": "quay"}, "ghcr"]
    problems = cm.validate(variables, hosts, layers=["l3"])
    # (the unknown key "size" is the preflight schema check's, test_inventory_check.py: one problem per mistake)
    assert fields(problems) == ["cellplatform_gitea.database.instances",
                                "cellplatform_harbor.proxy_caches[0].url", "cellplatform_harbor.proxy_caches[1]"]
    assert all(p["fix"] for p in problems)


# --- day 2 -------------------------------------------------------------------------------------------
def test_upgrade_batch_size_defaults_to_one_and_is_checked(ref):
    variables, hosts = ref
    assert cm.build_cell_model(variables, hosts)["upgrade"] == {"batch_size": 1}
    variables["cellplatform_upgrade_batch_size"] = "3"   # -e cellplatform_upgrade_batch_size=3 arrives as text
    assert cm.validate(variables, hosts) == []
    assert cm.build_cell_model(variables, hosts)["upgrade"] == {"batch_size": 3}
    for bad, why in ((0, "is out of range (allowed between 1 and 100)"), (101, "is out of range"),
                     ("two", "must be an integer")):
        variables["cellplatform_upgrade_batch_size"] = bad
        problems = cm.validate(variables, hosts)
        assert [p["field"] for p in problems] == ["cellplatform_upgrade_batch_size"], problems
        assert why in problems[0]["message"] and "how many workers upgrade.yml upgrades at once" in problems[0]["fix"]


# --- L7 developer portal ------------------------------------------------------------------------

def _backstage(ref, **image):
    variables, hosts = ref
    variables = dict(variables)
    variables["cellplatform_backstage"] = {"image": dict(variables["cellplatform_backstage"]["image"], **image)}
    return variables, hosts


def test_backstage_is_required_only_when_l7_is_selected(ref):
    variables, hosts = ref
    variables = dict(variables)
    del variables["cellplatform_backstage"]
    assert cm.validate(variables, hosts, layers=["l0", "l1", "l2"]) == []
    problems = cm.validate(variables, hosts, layers=["l7"])
    assert [p["field"] for p in problems] == ["cellplatform_backstage"]
    assert "Building the app image" in problems[0]["fix"]
    assert cm.build_cell_model(variables, hosts)["backstage"] is None


def test_backstage_image_pinned_by_digest_is_in_the_reference(ref):
    digest = "sha256:" + "ab" * 32
    variables, hosts = _backstage(ref, digest=digest, registry="harbor.cell.lan:8443")
    assert cm.validate(variables, hosts, layers=["l7"]) == []
    assert cm.build_cell_model(variables, hosts)["backstage"]["image"]["reference"] == \
        "harbor.cell.lan:8443/ci/backstage:1.0.0@" + digest


@pytest.mark.parametrize("image, field, words", [
    ({"registry": "ghcr.io", "repository": "backstage/backstage"}, "repository", "demo image"),
    ({"registry": "GHCR.io", "repository": "backstage/backstage"}, "repository", "demo image"),
    ({"repository": "CI/Backstage"}, "repository", "not an image repository path"),
    ({"tag": "latest"}, "tag", "not pinned"),
    ({"tag": "v1 .0"}, "tag", "not an image tag"),
    ({"registry": "harbor.cell.lan:99999"}, "registry", "not a registry host"),
    ({"digest": "sha256:XYZ"}, "digest", "not a sha256 digest"),
])
def test_backstage_image_problems_name_the_field(ref, image, field, words):
    problems = cm.validate(*_backstage(ref, **image), layers=["l7"])
    assert [p["field"] for p in problems] == ["cellplatform_backstage.image." + field], problems
    assert words in problems[0]["message"]


def test_example_names_come_from_the_inventory_and_go_with_it(ref):
    variables, _hosts = ref
    variables["cellplatform_cell_name"] = "frankfurt"
    warned = [w for w in cm.advise(variables) if "example names" in w]
    assert len(warned) == 1 and "(domain cell.lan, DNS server 192.168.100.1)" in warned[0]
    assert "cellplatform_network.nameservers[0]=192.168.100.1" in warned[0]
    # another inventory's declared examples are looked for instead
    variables["cellplatform_reference_names"] = {"cell_name": "x", "domain": "example.test", "dns_server": "10.9.9.9"}
    assert [w for w in cm.advise(variables) if "example names" in w] == []
    # once deleted, nothing is compared
    del variables["cellplatform_reference_names"]
    assert [w for w in cm.advise(variables, mode="apply") if "example names" in w] == []
