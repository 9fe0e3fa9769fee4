# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The Backstage catalog generated from a plan: entities, links, references, and the software template."""

from __future__ import annotations

import copy
import re

import pytest
import yaml

from ansible_collections.cellplatform.platform.plugins.plugin_utils import backstage_catalog as bc

GITOPS = {"repo_url": "https://gitea.cell.lan/platform/cell.git", "revision": "main", "path": "apps",
          "project": "platform", "namespace": "argocd"}
CELL = {"name": "cell", "dns_domain": "cell.lan", "argocd_domain": "argocd.cell.lan", "gitops": GITOPS,
        "gateway": {"name": "platform", "namespace": "gateway", "https_listener": "https"}}
PLAN = {"components": [
    {"name": "cilium", "layer": "l0", "namespace": "kube-system", "chart": "cilium", "version": "1.20.0",
     "release": "cilium", "privileged": True,
     "ui": [{"url": "https://hubble.cell.lan", "title": "Hubble UI", "service": "hubble-ui", "port": 80}]},
    {"name": "gateway-api-crds", "layer": "l0", "namespace": "kube-system", "manifests": []},
    {"name": "gitea-database", "layer": "l3", "namespace": "gitea", "manifests": ["l3/gitea-database/manifests.yaml"]},
    {"name": "gitea", "layer": "l3", "namespace": "gitea", "chart": "gitea", "version": "12.7.0",
     "depends_on": ["gitea-database", "longhorn"], "notes": "Admin  gitea-admin."},
    {"name": "grafana", "layer": "l4", "namespace": "monitoring", "chart": "grafana", "version": "12.11.1",
     "ui": [{"url": "https://grafana.cell.lan", "title": "Grafana", "service": "grafana", "port": 80}]},
    {"name": "stale-l7", "layer": "l7", "namespace": "x", "chart": "x", "version": "1"},
]}
RECORDS = [{"name": "backstage", "namespace": "backstage", "depends_on": ["gitea"],
            "chart": {"repo": "https://backstage.github.io/charts", "name": "backstage", "version": "2.8.2"},
            "ui": [{"service": "backstage", "port": 7007, "title": "Backstage"}]}]
OPTIONS = {"dir": "l7/backstage-catalog", "owner": "platform-team", "domain": "cellplatform", "location": "cell-catalog",
           "grafana": {"component": "grafana", "dashboard_uid": "85a562078cdf77779eaa1add43ccec1e"}}
TEMPLATE = {"dir": "l7/backstage-catalog", "owner": "platform-team", "name": "service", "gitea_host": "gitea.cell.lan",
            "org": "apps", "image_prefix": "harbor.cell.lan/ci", "base_image": "nginx:1", "initial_tag": "0.0.0",
            "argocd_domain": "argocd.cell.lan", "argocd_namespace": "argocd", "application_prefix": "service-"}


def render(plan=None, records=None, options=None):
    files = bc.catalog_files(copy.deepcopy(plan or PLAN), copy.deepcopy(records or RECORDS), CELL, options or OPTIONS,
                             bc.service_template(TEMPLATE))
    return dict((f["path"], f) for f in files)


def entities(files):
    return [doc for path, f in files.items() if "/skeleton/" not in path for doc in f.get("documents", [])]


def by_name(files, kind, name):
    return next(d for d in entities(files) if d["kind"] == kind and d["metadata"]["name"] == name)


def test_every_plan_component_and_the_portal_itself_is_in_the_catalog_once():
    files = render()
    components = sorted(d["metadata"]["name"] for d in entities(files) if d["kind"] in ("Component", "Resource"))
    # plan.json's own l7 entries are replaced by the records' (a stale one disappears)
    assert components == ["backstage", "cilium", "gateway-api-crds", "gitea", "gitea-database", "grafana"]
    assert bc.check_catalog(entities(files)) == []
    assert by_name(files, "Component", "gitea")["spec"] == {
        "type": "service", "lifecycle": "production", "owner": "group:platform-team", "system": "l3-delivery",
        "dependsOn": ["resource:gitea-database"]}      # longhorn is not in this plan: no dangling reference
    assert by_name(files, "Resource", "gitea-database")["spec"]["type"] == "database"
    assert by_name(files, "Resource", "gateway-api-crds")["spec"]["type"] == "kubernetes-manifests"
    assert by_name(files, "Component", "gitea")["metadata"]["description"] == "Admin gitea-admin."


def test_systems_per_layer_in_the_platform_domain_and_a_location_that_lists_every_file():
    files = render()
    systems = sorted(d["metadata"]["name"] for d in entities(files) if d["kind"] == "System")
    assert systems == ["l0-infrastructure", "l3-delivery", "l4-observability", "l7-developer-portal"]
    assert all(by_name(files, "System", s)["spec"]["domain"] == "cellplatform" for s in systems)
    location = files["l7/backstage-catalog/catalog-info.yaml"]["documents"][0]
    assert location["kind"] == "Location"
    targets = location["spec"]["targets"]
    assert targets == ["./platform.yaml", "./l0.yaml", "./l3.yaml", "./l4.yaml", "./l7.yaml",
                       "./templates/service/template.yaml"]
    for target in targets:
        assert "l7/backstage-catalog/" + target[2:] in files


def test_links_ui_grafana_argocd():
    files = render()
    links = by_name(files, "Component", "cilium")["metadata"]["links"]
    assert [link["url"] for link in links] == [
        "https://hubble.cell.lan",
        "https://grafana.cell.lan/d/85a562078cdf77779eaa1add43ccec1e/?var-namespace=kube-system",
        "https://argocd.cell.lan/applications/argocd/cilium"]
    backstage = [link["url"] for link in by_name(files, "Component", "backstage")["metadata"]["links"]]
    assert backstage[0] == "https://backstage.cell.lan"
    # without L4 (no grafana in the plan) there is no Grafana link
    plan = {"components": [c for c in PLAN["components"] if c["name"] != "grafana"]}
    links = by_name(render(plan), "Component", "cilium")["metadata"]["links"]
    assert not any("grafana" in link["url"] for link in links)


def test_the_catalog_refuses_dangling_references_and_bad_names():
    docs = entities(render())
    broken = copy.deepcopy(docs)
    next(d for d in broken if d["metadata"]["name"] == "gitea")["spec"]["owner"] = "group:nobody"
    next(d for d in broken if d["metadata"]["name"] == "cilium")["spec"]["system"] = "l9-nothing"
    next(d for d in broken if d["metadata"]["name"] == "grafana")["metadata"]["name"] = "Grafana_UI"
    problems = bc.check_catalog(broken)
    assert any("spec.owner group:nobody names no entity" in p for p in problems)
    assert any("spec.system l9-nothing names no entity" in p for p in problems)
    assert any("'Grafana_UI': metadata.name is not DNS-safe" in p for p in problems)
    plan = {"components": [dict(PLAN["components"][0], layer="l9")]}
    with pytest.raises(bc.CatalogError, match="layer 'l9'"):
        render(plan)


def test_software_template_publishes_to_gitea_in_the_ci_org_and_registers_the_service():
    files = render()
    template = files["l7/backstage-catalog/templates/service/template.yaml"]["documents"][0]
    assert template["apiVersion"] == "scaffolder.backstage.io/v1beta3" and template["kind"] == "Template"
    steps = dict((s["action"], s["input"]) for s in template["spec"]["steps"])
    assert list(steps) == ["fetch:template", "publish:gitea", "catalog:register"]
    assert steps["fetch:template"]["url"] == "./skeleton"
    assert steps["publish:gitea"]["repoUrl"] == "gitea.cell.lan?owner=apps&repo=${{ parameters.name }}"
    assert steps["fetch:template"]["values"]["image"] == "harbor.cell.lan/ci/${{ parameters.name }}"
    skeleton = sorted(p.split("/skeleton/", 1)[1] for p in files if "/skeleton/" in p)
    assert skeleton == ["Dockerfile", "README.md", "catalog-info.yaml", "deploy/deployment.yaml",
                        "deploy/kustomization.yaml", "deploy/service.yaml", "index.html"]
    # every ${{ values.x }} of the skeleton is a value the template passes
    values = set(steps["fetch:template"]["values"])
    used = set()
    for path, entry in files.items():
        if "/skeleton/" in path:
            used |= set(re.findall(r"\$\{\{ values\.(\w+) \}\}", entry["content"]))
    assert used and used <= values, used - values


def test_service_applications_follow_the_template():
    project, appset = bc.service_applications({
        "namespace": "argocd", "project": "services", "gitea_url": "https://gitea.cell.lan", "org": "apps",
        "token_secret": "services-gitea-token", "application_prefix": "service-",
        "destination_server": "https://kubernetes.default.svc"})
    assert project["kind"] == "AppProject" and project["spec"]["sourceRepos"] == ["https://gitea.cell.lan/apps/*"]
    generator = appset["spec"]["generators"][0]["scmProvider"]
    assert generator["gitea"]["owner"] == "apps" and generator["filters"] == [{"pathsExist": ["deploy/kustomization.yaml"]}]
    assert appset["spec"]["template"]["metadata"]["name"] == "service-{{ .repository }}"
    assert appset["spec"]["template"]["spec"]["source"]["path"] == "deploy"
    # the kustomization the ApplicationSet looks for is what the skeleton ships
    assert "deploy/kustomization.yaml" in bc.SKELETON
    yaml.safe_load(bc.SKELETON["deploy/kustomization.yaml"].replace("${{", "x").replace("}}", "x"))
