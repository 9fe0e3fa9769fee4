# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Deterministic serialisation, plan merging and PLAN.md of plugin_utils/render.py."""

from __future__ import annotations

import json

import pytest
import yaml

from ansible_collections.cellplatform.platform.plugins.plugin_utils import render

CELL = {
    "name": "cell",
    "network": {"cidr": "192.168.100.0/24", "gateway": "192.168.100.1", "nameservers": ["192.168.100.1"]},
    "api": {"vip": "192.168.100.50", "port": 6443, "endpoint": "https://192.168.100.50:6443"},
    "lb_pool": {"start": "192.168.100.200", "end": "192.168.100.250", "size": 51},
    "pod_cidr": "10.244.0.0/16",
    "service_cidr": "10.96.0.0/16",
    "talos": {"version": "v1.13.9", "contract": "v1.13", "kubernetes_version": "1.36.3"},
    "nodes": [
        {"name": "cp-1", "ip": "192.168.100.51", "role": "controlplane"},
        {"name": "worker-1", "ip": "192.168.100.61", "role": "worker"},
    ],
    "bootstrap_node": "cp-1",
}


def test_yaml_keeps_yaml11_lookalikes_as_strings():
    text = render.dump_yaml({"auto": "off", "flag": "yes", "version": "1.20", "n": 3, "b": False})
    assert "auto: 'off'" in text
    assert "flag: 'yes'" in text
    assert "version: '1.20'" in text
    assert yaml.safe_load(text) == {"auto": "off", "flag": "yes", "version": "1.20", "n": 3, "b": False}


def test_yaml_keeps_key_order_and_uses_literal_blocks():
    text = render.dump_yaml({"kind": "ConfigMap", "apiVersion": "v1", "data": {"script": "a\nb\n"}})
    assert text.index("kind:") < text.index("apiVersion:")
    assert "script: |\n" in text


def test_yaml_indents_sequences_inside_mappings():
    assert render.dump_yaml({"podSubnets": ["10.244.0.0/16"]}) == "podSubnets:\n  - 10.244.0.0/16\n"


def test_multi_document_stream():
    text = render.dump_yaml_documents([{"kind": "A"}, None, {"kind": "B"}])
    assert text == "---\nkind: A\n---\nkind: B\n"
    assert [d["kind"] for d in yaml.safe_load_all(text)] == ["A", "B"]


def test_json_is_sorted_and_stable():
    assert render.dump_json({"b": 1, "a": {"d": 2, "c": 3}}) == render.dump_json({"a": {"c": 3, "d": 2}, "b": 1})
    assert render.dump_json({"b": 1, "a": 2}).startswith('{\n  "a": 2')


@pytest.mark.parametrize("text", [
    "-----BEGIN EC PRIVATE KEY-----\nabc\n-----END EC PRIVATE KEY-----\n",
    "-----BEGIN PRIVATE KEY-----\n",
    "key: AGE-SECRET-KEY-1" + "Q" * 58 + "\n",
])
def test_refuses_private_key_material(text):
    with pytest.raises(render.RenderError, match="refusing to write private key material"):
        render.serialise({"path": "x.txt", "content": text})


def test_public_certificate_is_allowed():
    body = render.serialise({"path": "ca.crt", "content": "-----BEGIN CERTIFICATE-----\nMII\n-----END CERTIFICATE-----"})
    assert body.endswith(b"-----END CERTIFICATE-----\n")


def test_merge_plan_replaces_only_the_rendered_layer():
    plan = render.merge_plan({}, "l1", [{"name": "metallb", "sync_wave": -6}, {"name": "external-dns", "sync_wave": -5}])
    plan = render.merge_plan(plan, "l2", [{"name": "argocd"}])
    plan = render.merge_plan(plan, "l1", [{"name": "metallb", "sync_wave": -6}])
    names = [c["name"] for c in plan["components"]]
    assert names == ["metallb", "argocd"]
    assert plan["layers_rendered"] == ["l1", "l2"]
    assert all(c["layer"] in ("l1", "l2") for c in plan["components"])


def test_merge_plan_rejects_a_component_of_another_layer():
    with pytest.raises(render.RenderError, match="says layer l2 but is rendered by layer l1"):
        render.merge_plan({}, "l1", [{"name": "argocd", "layer": "l2"}])


def test_merge_plan_is_order_independent():
    a = render.merge_plan(render.merge_plan({}, "l0", [{"name": "cilium"}], CELL), "l1", [{"name": "metallb"}])
    b = render.merge_plan(render.merge_plan({}, "l1", [{"name": "metallb"}]), "l0", [{"name": "cilium"}], CELL)
    assert render.dump_json(a) == render.dump_json(b)


def test_plan_md_network_picture_is_sorted_by_address():
    cilium = {"name": "cilium", "chart": "cilium", "repo": "https://helm.cilium.io/",
              "version": "1.20.0", "namespace": "kube-system"}
    plan = render.merge_plan({}, "l0", [cilium], CELL)
    plan = render.merge_plan(plan, "l1", [{"name": "karpenter", "address_range": {
        "start": "192.168.100.100", "end": "192.168.100.149", "label": "Karpenter dynamic workers"}}])
    md = render.render_plan_md(plan)
    marks = ("192.168.100.1 ", "192.168.100.50 ", "192.168.100.51 ", "192.168.100.61 ",
             "192.168.100.100-192.168.100.149", "192.168.100.200-192.168.100.250")
    order = [md.index(s) for s in marks]
    assert order == sorted(order)
    assert "| cilium | cilium (https://helm.cilium.io/) | 1.20.0 | kube-system |" in md
    assert "Karpenter dynamic workers" in md
    json.dumps(plan)  # plain data only


def test_plan_md_lists_component_notes():
    plan = render.merge_plan({}, "l2", [{"name": "linkerd-control-plane", "notes": "identity injected at apply"},
                                        {"name": "kyverno", "notes": ["audit first", "then enforce"]}])
    md = render.render_plan_md(plan)
    assert "- **linkerd-control-plane**: identity injected at apply" in md
    assert md.index("- **kyverno**: audit first") < md.index("- **kyverno**: then enforce")


def test_plan_md_network_box_fits_the_longest_label():
    md = render.render_plan_md(render.merge_plan({}, "l0", [], CELL))
    fence = md.split("## Network")[1].split("```")[1]
    box = [line for line in fence.splitlines() if line.startswith(("+", "|"))]
    assert len(box) == 2 + 5 and len({len(line) for line in box}) == 1, box
    assert any(line.endswith("API VIP (Talos Layer2VIP) -> https://192.168.100.50:6443 |") for line in box)


def test_plan_cell_leaves_out_what_describes_this_run_on_this_machine():
    cell = dict(CELL, mode="apply", build_dir="/home/me/build/cell", secrets_dir="/home/me/inv/secrets")
    plan = render.merge_plan({}, "l0", [], cell)
    assert plan["cell"] == CELL
    assert render.dump_json(plan) == render.dump_json(render.merge_plan({}, "l0", [], dict(cell, mode="render")))


def test_plan_lists_every_external_name_and_address():
    cell = dict(CELL, provisioner="proxmox", proxmox={"endpoint": "https://pve.example.net:8006/"},
                dns_domain="example.net", gitops={"repo_url": "https://git.example.net/ops/cell.git"},
                argocd_domain="argocd.example.net", lb_pool=dict(CELL["lb_pool"], range="192.168.100.200-192.168.100.250"),
                gateway={"name": "platform", "namespace": "gateway", "address": "192.168.100.200",
                         "hostname": "*.example.net"},
                tls={"issuer": "acme", "cluster_issuer": "cellplatform-acme",
                     "acme": {"server": "https://acme-v02.api.letsencrypt.org/directory",
                              "nameserver": "192.168.100.2:53"}},
                external_dns={"provider": "rfc2136", "rfc2136": {"host": "192.168.100.2", "port": 53, "zone": "example.net",
                                                                 "tsig_keyname": "externaldns-key"}},
                karpenter={"enabled": True, "ipam": {"range": "192.168.100.100-192.168.100.149"}},
                api=dict(CELL["api"], dns_name="api.example.net"))
    plan = render.merge_plan({}, "l0", [], cell)
    values = {row["what"]: row["value"] for row in plan["external"]}
    assert values == {
        "Kubernetes API": "https://192.168.100.50:6443",
        "Kubernetes API DNS name": "api.example.net",
        "nodes": "cp-1 192.168.100.51, worker-1 192.168.100.61",
        "LoadBalancer pool": "192.168.100.200-192.168.100.250",
        "dynamic worker addresses": "192.168.100.100-192.168.100.149",
        "gateway": "192.168.100.1",
        "DNS resolvers": "192.168.100.1",
        "Proxmox API": "https://pve.example.net:8006/",
        "DNS domain": "example.net",
        "DNS server (RFC2136)": "192.168.100.2:53, zone example.net",
        "GitOps repository": "https://git.example.net/ops/cell.git",
        "shared Gateway": "192.168.100.200 (*.example.net)",
        "ACME server": "https://acme-v02.api.letsencrypt.org/directory",
    }
    md = render.render_plan_md(plan)
    section = md.split("## Names and addresses outside the cell")[1]
    for row in plan["external"]:
        assert "| %s | %s | %s |" % (row["what"], row["value"], row["used_by"]) in section
    # machines that already boot Talos, no Karpenter: no Proxmox API to reach
    bare = dict(cell, provisioner="none", karpenter={"enabled": False}, tls={"issuer": "internal-ca"})
    rows = {row["what"] for row in render.merge_plan({}, "l0", [], bare)["external"]}
    assert "Proxmox API" not in rows and "ACME server" not in rows


def test_plan_md_lists_the_web_uis_and_the_gateway_address():
    cell = dict(CELL, gateway={"name": "platform", "namespace": "gateway", "address": "192.168.100.200",
                               "class_name": "cilium", "hostname": "*.cell.lan"},
                tls={"cluster_issuer": "cellplatform-ca"},
                storage={"provider": "longhorn", "class_name": "longhorn", "longhorn": {"replicas": 3},
                         "volume": {"type": "partition", "path": "/var/mnt/longhorn", "disk_selector": "!system_disk",
                                    "min_size_gib": 50, "max_size_gib": None}})
    plan = render.merge_plan({}, "l2", [{"name": "argocd", "ui": [
        {"url": "https://argocd.cell.lan", "title": "Argo CD", "service": "argocd-server", "port": 80}]}], cell)
    plan = render.merge_plan(plan, "l0", [{"name": "cilium", "ui": [
        {"url": "https://hubble.cell.lan", "title": "Hubble UI", "service": "hubble-ui", "port": 80}]},
        {"name": "gateway-api-crds", "remote_manifests": ["https://raw.githubusercontent.com/a/b/v1/x.yaml"] * 2}])
    md = render.render_plan_md(plan)
    section = md.split("## Web UIs (shared Gateway)")[1].split("## Components")[0]
    assert "Gateway `gateway/platform` (class `cilium`) at **192.168.100.200**" in section
    assert "wildcard certificate from ClusterIssuer `cellplatform-ca`" in section
    assert section.index("| https://argocd.cell.lan | Argo CD | argocd (l2) | argocd-server:80 |") < \
        section.index("| https://hubble.cell.lan | Hubble UI | cilium (l0) | hubble-ui:80 |")
    assert "192.168.100.200                 Gateway gateway/platform (HTTPS *.cell.lan), reserved in the pool" in md
    assert "| gateway-api-crds | 2 upstream manifests (raw.githubusercontent.com) |" in md
    assert ("| storage | longhorn, default StorageClass `longhorn`, 3 replicas; Talos user volume `/var/mnt/longhorn` "
            "(partition on `!system_disk`, at least 50 GiB) on every static worker |") in md


def test_plan_md_has_no_web_ui_section_without_gateway_or_uis():
    assert "## Web UIs" not in render.render_plan_md(render.merge_plan({}, "l0", [], CELL))
