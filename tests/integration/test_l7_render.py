"""L7 render: the Backstage catalog is the cell, the software template is usable, the values are valid.

The whole site is rendered once (L7 last, so plan.json holds every layer), then:

* the catalog has every plan.json component exactly once (a chart as a Component, manifests only as a
  Resource) and nothing else, in its layer's System, with links to its UIs, its Grafana dashboard
  (L4's Grafana is in the reference cell) and its Argo CD Application; every entity has the right apiVersion, a kind, a DNS-safe name, and every owner,
  system, domain and dependency names an entity of the catalog; the Location lists every file;
* the software template is a scaffolder.backstage.io/v1beta3 Template whose parameters are a valid
  JSON Schema, whose skeleton exists and uses only the values it is given, and which publishes to
  the cell's Gitea in the CI organisation;
* Backstage's values and the other L7 files pass tests/support/verify_build.py (the chart's
  values.schema.json, the Argo CD CRDs, Gateway API), and the check fails on a broken value;
* a rerun of `-t l7` changes nothing, and removes nothing of the catalog.

    scripts/netns-run .venv/bin/pytest -q tests/integration/test_l7_render.py
"""

from __future__ import annotations

import json
import re
import subprocess
import sys

import jsonschema
import pytest
import yaml

from apply_fixtures import REPO, run_playbook

CATALOG = "l7/backstage-catalog"
ENTITY_API = "backstage.io/v1alpha1"
NAME_RE = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")
LAYER_SYSTEMS = {"l0": "l0-infrastructure", "l1": "l1-cluster-platform", "l2": "l2-core-platform",
                 "l3": "l3-delivery", "l4": "l4-observability", "l5": "l5-resilience", "l6": "l6-security",
                 "l7": "l7-developer-portal"}


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("l7render")
    extra = {"cellplatform_mode": "render", "cellplatform_build_root": str(tmp / "build")}
    rc, out = run_playbook("playbooks/site.yml", {}, extra)
    assert rc == 0, out[-5000:]
    build = tmp / "build" / "cell"
    return {"build": build, "extra": extra, "plan": json.loads((build / "plan.json").read_text())}


def _docs(path):
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


def _catalog(build):
    """Every entity of the catalog directory (the skeleton holds templates, not entities)."""
    out = {}
    for path in sorted((build / CATALOG).rglob("*.yaml")):
        rel = str(path.relative_to(build / CATALOG))
        if "skeleton/" not in rel:
            out[rel] = _docs(path)
    return out


def test_the_catalog_is_every_component_of_the_plan(site):
    build, plan = site["build"], site["plan"]
    entities = [e for docs in _catalog(build).values() for e in docs]
    parts = [e for e in entities if e["kind"] in ("Component", "Resource")]
    assert sorted(e["metadata"]["name"] for e in parts) == sorted(c["name"] for c in plan["components"])
    assert {c["layer"] for c in plan["components"]} >= {"l0", "l1", "l2", "l3", "l4", "l7"}
    for comp in plan["components"]:
        (entity,) = [e for e in parts if e["metadata"]["name"] == comp["name"]]
        assert entity["kind"] == ("Component" if comp.get("chart") else "Resource"), comp["name"]
        assert entity["spec"]["system"] == LAYER_SYSTEMS[comp["layer"]]
        assert entity["metadata"]["annotations"]["backstage.io/kubernetes-namespace"] == comp["namespace"]
        urls = [link["url"] for link in entity["metadata"]["links"]]
        assert "https://argocd.cell.lan/applications/argocd/%s" % comp["name"] in urls
        for ui in comp.get("ui") or []:
            assert ui["url"] in urls
        # L4's Grafana is in this cell: its namespace dashboard for every component
        assert "https://grafana.cell.lan/d/85a562078cdf77779eaa1add43ccec1e/?var-namespace=%s" % comp["namespace"] in urls
        for dep in comp.get("depends_on") or []:
            if any(c["name"] == dep for c in plan["components"]):
                assert any(ref.endswith(":" + dep) for ref in entity["spec"]["dependsOn"]), (comp["name"], dep)
    systems = sorted(e["metadata"]["name"] for e in entities if e["kind"] == "System")
    assert systems == sorted(LAYER_SYSTEMS[layer] for layer in {c["layer"] for c in plan["components"]})


def test_every_entity_is_well_formed_and_every_reference_resolves(site):
    catalog = _catalog(site["build"])
    entities = [e for docs in catalog.values() for e in docs]
    known = {(e["kind"].lower(), e["metadata"]["name"]) for e in entities}
    assert len(known) == len(entities), "an entity is defined twice"
    for entity in entities:
        where = "%s %s" % (entity["kind"], entity["metadata"]["name"])
        api = "scaffolder.backstage.io/v1beta3" if entity["kind"] == "Template" else ENTITY_API
        assert entity["apiVersion"] == api, where
        assert NAME_RE.match(entity["metadata"]["name"]), where
        spec = entity["spec"]
        if entity["kind"] not in ("Location", "Group"):
            kind, _, name = spec["owner"].partition(":")
            assert (kind, name) in known, "%s: owner %s" % (where, spec["owner"])
        if "system" in spec:
            assert ("system", spec["system"]) in known, where
        if "domain" in spec:
            assert ("domain", spec["domain"]) in known, where
        for ref in spec.get("dependsOn") or []:
            assert tuple(ref.split(":", 1)) in known, "%s: dependsOn %s" % (where, ref)
    (location,) = catalog["catalog-info.yaml"]
    assert location["kind"] == "Location"
    listed = sorted(t[2:] for t in location["spec"]["targets"])
    assert listed == sorted(rel for rel in catalog if rel != "catalog-info.yaml")


def test_the_software_template_is_usable(site):
    build = site["build"]
    base = build / CATALOG / "templates/service"
    (template,) = _docs(base / "template.yaml")
    assert template["apiVersion"] == "scaffolder.backstage.io/v1beta3" and template["kind"] == "Template"
    for page in template["spec"]["parameters"]:
        jsonschema.Draft7Validator.check_schema({k: v for k, v in page.items() if k != "title"})
    steps = {s["action"]: s["input"] for s in template["spec"]["steps"]}
    assert list(steps) == ["fetch:template", "publish:gitea", "catalog:register"]
    assert steps["publish:gitea"]["repoUrl"].startswith("gitea.cell.lan?owner=apps&repo=")
    assert steps["fetch:template"]["url"] == "./skeleton" and (base / "skeleton").is_dir()
    given = set(steps["fetch:template"]["values"])
    used = set()
    for path in (base / "skeleton").rglob("*"):
        if path.is_file():
            used |= set(re.findall(r"\$\{\{ values\.(\w+) \}\}", path.read_text()))
    assert used and used <= given, used - given
    # the image the skeleton deploys is the one L3's CI pipeline pushes for a repository of that name
    assert steps["fetch:template"]["values"]["image"] == "harbor.cell.lan/ci/${{ parameters.name }}"
    # the ApplicationSet that gives the new repository its Argo CD Application looks for the skeleton's deploy/
    appset = [d for d in _docs(build / "l7/service-applications/manifests.yaml") if d["kind"] == "ApplicationSet"][0]
    (path,) = appset["spec"]["generators"][0]["scmProvider"]["filters"][0]["pathsExist"]
    assert (base / "skeleton" / path).is_file()


def test_backstage_values_and_l7_files_are_schema_valid(site, schema_root, tmp_path):
    build = site["build"]
    verify = [sys.executable, str(REPO / "tests/support/verify_build.py"), "--layer", "l7", "--schemas", str(schema_root)]
    proc = subprocess.run(verify + [str(build)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, check=False)
    assert proc.returncode == 0, proc.stdout[-3000:]
    # the check can fail: a value of the wrong type for the chart
    bad = tmp_path / "cell"
    subprocess.run(["cp", "-a", str(build), str(bad)], check=True)
    values = yaml.safe_load((bad / "l7/backstage/values.yaml").read_text())
    values["backstage"]["replicas"] = "two"
    (bad / "l7/backstage/values.yaml").write_text(yaml.safe_dump(values))
    proc = subprocess.run(verify + [str(bad)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, check=False)
    assert proc.returncode == 1 and "l7/backstage/values.yaml" in proc.stdout, proc.stdout[-3000:]


def test_backstage_values_follow_the_cell(site):
    build = site["build"]
    values = yaml.safe_load((build / "l7/backstage/values.yaml").read_text())
    assert values["backstage"]["image"] == {"registry": "harbor.cell.lan", "repository": "ci/backstage",
                                            "tag": "1.0.0", "digest": ""}
    assert values["postgresql"]["enabled"] is False
    assert values["ingress"]["enabled"] is False and values["httpRoute"]["enabled"] is False
    (cluster,) = _docs(build / "l7/backstage-database/manifests.yaml")
    assert cluster["spec"]["storage"]["storageClass"] == site["plan"]["cell"]["storage"]["class_name"]
    (route,) = _docs(build / "l7/backstage/routes.yaml")
    assert route["spec"]["hostnames"] == ["backstage.cell.lan"]
    assert route["spec"]["rules"][0]["backendRefs"] == [{"name": "backstage", "port": 7007}]


def test_rerendering_l7_changes_nothing(site):
    before = {p: p.read_bytes() for p in (site["build"] / CATALOG).rglob("*") if p.is_file()}
    rc, out = run_playbook("playbooks/site.yml", {}, site["extra"], args=("-t", "l7"))
    assert rc == 0, out[-5000:]
    recap = re.search(r"localhost\s*:\s*ok=\d+\s+changed=(\d+)", out)
    assert recap and recap.group(1) == "0", out[-3000:]
    after = {p: p.read_bytes() for p in (site["build"] / CATALOG).rglob("*") if p.is_file()}
    assert after == before
