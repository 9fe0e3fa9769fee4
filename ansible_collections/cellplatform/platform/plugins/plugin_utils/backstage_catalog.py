# -*- coding: utf-8 -*-
# Copyright: (c) 2026, cellplatform developers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The Backstage catalog of a cell, generated from the cell itself.

``catalog_files`` turns the plan.json entries of every rendered layer (plus the developer portal's
own records, whose entries it computes with the component pipeline's ``plan_entries``) into
Backstage entities, one render_files entry per file:

* ``catalog-info.yaml``: a ``Location`` naming every other file (the one location Backstage's
  app-config lists);
* ``platform.yaml``: the owning ``Group`` and the ``Domain`` of the platform;
* ``<layer>.yaml``: per layer a ``System`` and each of its components as a ``Component`` (a chart:
  running software) or a ``Resource`` (manifests only: CRDs, databases, policies), with its owner,
  system, dependencies, its web UIs, its Grafana dashboard (when the cell has a Grafana) and its
  Argo CD Application as links;
* ``templates/<name>/template.yaml`` and its ``skeleton/``: the software template that creates a
  service repository in Gitea (``service_template``).

``check_catalog`` is the validation the tests and the render share: apiVersion, kind, DNS-safe
names, and every owner, system, domain and dependency naming an entity of the catalog.

Pure and deterministic; plain data in and out.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from ansible_collections.cellplatform.platform.plugins.module_utils.cell_model import LAYER_TITLES
from ansible_collections.cellplatform.platform.plugins.plugin_utils.component import (
    ComponentError,
    plan_entries,
    records_for,
)

ENTITY_API = "backstage.io/v1alpha1"
TEMPLATE_API = "scaffolder.backstage.io/v1beta3"
CATALOG_KINDS = ("Component", "Resource", "System", "Domain", "Group", "User", "Location", "Template", "API")
# Backstage's entity name rule (catalog-model's KubernetesValidatorFunctions.isValidObjectName) narrowed to
# DNS labels: lowercase letters, digits and '-', at most 63 characters.
_ENTITY_NAME_RE = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")
# kube-prometheus-stack's "Kubernetes / Compute Resources / Namespace (Pods)" dashboard takes the namespace
# as var-namespace.
NAMESPACE_VARIABLE = "var-namespace"


class CatalogError(ValueError):
    """Input the catalog cannot be built from; the message names what and the fix."""


def layer_system(layer):
    """The System entity name of a layer: l3 -> l3-delivery (from the layer's title)."""
    titles = dict(LAYER_TITLES)
    if layer not in titles:
        raise CatalogError("plan.json names layer %r, which is not one of %s" % (layer, ", ".join(titles)))
    return re.sub(r"[^a-z0-9]+", "-", titles[layer].lower()).strip("-")


def _ref(kind, name):
    return "%s:%s" % (kind.lower(), name)


def _entity(kind, name, spec, title=None, description=None, links=None, annotations=None, tags=None):
    metadata = {"name": name}
    if title:
        metadata["title"] = title
    if description:
        metadata["description"] = description
    if annotations:
        metadata["annotations"] = dict(annotations)
    if tags:
        metadata["tags"] = list(tags)
    if links:
        metadata["links"] = list(links)
    return {"apiVersion": ENTITY_API, "kind": kind, "metadata": metadata, "spec": spec}


def _entries(plan, records, cell):
    """plan.json's components of the other layers, then the developer portal's own (computed from its
    records, so the catalog is right on the render that adds them)."""
    gitops = (cell or {}).get("gitops") or {}
    try:
        own = plan_entries(records_for(records or [], "l7"), gitops, cell)
    except ComponentError as exc:
        raise CatalogError(str(exc)) from exc
    others = [dict(entry) for entry in ((plan or {}).get("components") or []) if entry.get("layer") != "l7"]
    return others + own


def _grafana_base(entries, grafana):
    """The Grafana UI URL of the cell (the first UI of the component ``grafana['component']``), or None."""
    name = (grafana or {}).get("component")
    for entry in entries:
        if name and entry.get("name") == name and entry.get("ui"):
            return entry["ui"][0]["url"].rstrip("/")
    return None


def _is_component(entry):
    """Software that runs (a chart) is a Component; manifests alone (CRDs, databases, policies) a Resource."""
    return bool(entry.get("chart"))


def _resource_type(entry):
    return "database" if entry["name"].endswith(("-database", "-db")) else "kubernetes-manifests"


def _links(entry, cell, grafana_base, grafana):
    links = [{"url": ui["url"], "title": ui.get("title") or entry["name"], "icon": "dashboard"}
             for ui in entry.get("ui") or []]
    if grafana_base and grafana.get("dashboard_uid"):
        url = "%s/d/%s/?%s=%s" % (grafana_base, grafana["dashboard_uid"], NAMESPACE_VARIABLE, entry["namespace"])
        links.append({"url": url,
                      "title": "Grafana: namespace %s" % entry["namespace"], "icon": "dashboard"})
    argocd_domain = (cell or {}).get("argocd_domain")
    if argocd_domain:
        namespace = ((cell or {}).get("gitops") or {}).get("namespace") or "argocd"
        links.append({"url": "https://%s/applications/%s/%s" % (argocd_domain, namespace, entry["name"]),
                      "title": "Argo CD: %s" % entry["name"], "icon": "cloud"})
    return links


def _description(entry):
    if entry.get("notes"):
        return " ".join(str(entry["notes"]).split())
    if entry.get("chart"):
        return "Helm chart %s %s (release %s) in namespace %s." % (entry["chart"], entry["version"],
                                                                   entry.get("release") or entry["name"],
                                                                   entry["namespace"])
    return "Manifests in namespace %s (%s)." % (entry["namespace"], ", ".join(entry.get("manifests") or []) or "none")


def component_entities(entries, cell, options):
    """{layer: [System, Component/Resource ...]} for the plan entries."""
    owner = options["owner"]
    grafana = options.get("grafana") or {}
    grafana_base = _grafana_base(entries, grafana)
    kinds = dict((entry["name"], "Component" if _is_component(entry) else "Resource") for entry in entries)
    by_layer = {}
    for entry in entries:
        name = entry["name"]
        if not _ENTITY_NAME_RE.match(name):
            raise CatalogError("component %s: its name is not a valid catalog entity name (a DNS label)" % name)
        system = layer_system(entry["layer"])
        kind = kinds[name]
        depends = [_ref(kinds[dep], dep) for dep in entry.get("depends_on") or [] if dep in kinds]
        spec = {"owner": _ref("Group", owner), "system": system}
        if kind == "Component":
            spec.update(type="service", lifecycle="production")
        else:
            spec["type"] = _resource_type(entry)
        if depends:
            spec["dependsOn"] = depends
        annotations = {"backstage.io/kubernetes-namespace": entry["namespace"],
                       "argocd/app-name": name}
        if entry.get("chart"):
            annotations["cellplatform.io/helm-chart"] = "%s@%s" % (entry["chart"], entry["version"])
        tags = [entry["layer"]] + (["privileged"] if entry.get("privileged") else [])
        doc = _entity(kind, name, spec, description=_description(entry),
                      links=_links(entry, cell, grafana_base, grafana), annotations=annotations, tags=tags)
        by_layer.setdefault(entry["layer"], []).append(doc)
    out = {}
    for layer, title in LAYER_TITLES:
        if layer not in by_layer:
            continue
        system = _entity("System", layer_system(layer), {"owner": _ref("Group", owner), "domain": options["domain"]},
                         title=title, description="The %s layer of cell %s." % (title, (cell or {}).get("name")),
                         tags=[layer])
        out[layer] = [system] + sorted(by_layer[layer], key=lambda d: (d["kind"], d["metadata"]["name"]))
    return out


def platform_entities(cell, options):
    owner = options["owner"]
    group = _entity("Group", owner, {"type": "team", "children": []}, title=options.get("owner_title") or owner,
                    description="Runs the platform of cell %s." % (cell or {}).get("name"))
    domain = _entity("Domain", options["domain"], {"owner": _ref("Group", owner)},
                     title="Cell platform %s" % (cell or {}).get("name"),
                     description="Every platform component of cell %s, layer by layer (L0-L7)." % (cell or {}).get("name"))
    return [group, domain]


def catalog_files(plan, records, cell, options, template_files=()):
    """render_files entries of the whole catalog under ``options['dir']`` (see the module docstring).

    ``template_files``: the software template's files (``service_template``), listed in the Location.
    """
    base = options["dir"].rstrip("/")
    entries = _entries(plan, records, cell)
    layers = component_entities(entries, cell, options)
    files = [{"path": "%s/platform.yaml" % base, "documents": platform_entities(cell, options)}]
    for layer in sorted(layers):
        files.append({"path": "%s/%s.yaml" % (base, layer), "documents": layers[layer]})
    templates = [entry["path"] for entry in template_files if entry["path"].endswith("/template.yaml")]
    targets = ["./%s" % entry["path"][len(base) + 1:] for entry in files] + \
              ["./%s" % path[len(base) + 1:] for path in templates]
    location = {"apiVersion": ENTITY_API, "kind": "Location",
                "metadata": {"name": options["location"],
                             "description": "The catalog of cell %s, generated by cellplatform." % (cell or {}).get("name")},
                "spec": {"type": "url", "targets": targets}}
    files.insert(0, {"path": "%s/catalog-info.yaml" % base, "documents": [location]})
    out = files + list(template_files)
    problems = check_catalog([doc for entry in out if entry["path"].endswith(".yaml") and "/skeleton/" not in entry["path"]
                              for doc in entry.get("documents") or ([entry["data"]] if "data" in entry else [])])
    if problems:
        raise CatalogError("the generated catalog is not consistent: %s" % "; ".join(problems))
    return out


def check_catalog(documents):
    """Every problem of a set of catalog entities (empty when they are consistent)."""
    problems = []
    known = set()
    for doc in documents:
        if not isinstance(doc, Mapping):
            problems.append("%r is not an entity" % (doc,))
            continue
        kind, name = doc.get("kind"), (doc.get("metadata") or {}).get("name")
        api = TEMPLATE_API if kind == "Template" else ENTITY_API
        if doc.get("apiVersion") != api:
            problems.append("%s %s: apiVersion %r is not %s" % (kind, name, doc.get("apiVersion"), api))
        if kind not in CATALOG_KINDS:
            problems.append("%s: kind %r is not a catalog kind" % (name, kind))
        if not isinstance(name, str) or not _ENTITY_NAME_RE.match(name):
            problems.append("%s %r: metadata.name is not DNS-safe" % (kind, name))
        if (str(kind).lower(), name) in known:
            problems.append("%s %s is defined twice" % (kind, name))
        known.add((str(kind).lower(), name))
    for doc in documents:
        if not isinstance(doc, Mapping):
            continue
        spec = doc.get("spec") or {}
        where = "%s %s" % (doc.get("kind"), (doc.get("metadata") or {}).get("name"))
        refs = [("owner", spec.get("owner"), "group"), ("system", spec.get("system"), "system"),
                ("domain", spec.get("domain"), "domain")]
        refs += [("dependsOn", ref, None) for ref in spec.get("dependsOn") or []]
        for field, ref, default_kind in refs:
            if ref is None:
                if field == "owner" and doc.get("kind") not in ("Group", "User", "Location"):
                    problems.append("%s has no spec.owner" % where)
                continue
            kind, sep, name = str(ref).partition(":")
            if not sep:
                kind, name = default_kind, ref
            if (kind, name) not in known:
                problems.append("%s: spec.%s %s names no entity of the catalog" % (where, field, ref))
    return problems


# --- The software template: a service repository in Gitea, built by L3's CI, deployed by Argo CD ----------

# Skeleton files (fetch:template renders ${{ values.* }} with Nunjucks); the values are set by the template.
SKELETON = {
    "catalog-info.yaml": """\
apiVersion: backstage.io/v1alpha1
kind: Component
metadata:
  name: ${{ values.name }}
  description: ${{ values.description }}
  annotations:
    backstage.io/kubernetes-namespace: ${{ values.name }}
    argocd/app-name: ${{ values.application }}
  links:
    - url: https://${{ values.argocdDomain }}/applications/${{ values.argocdNamespace }}/${{ values.application }}
      title: Argo CD
      icon: cloud
    - url: https://${{ values.giteaHost }}/${{ values.org }}/${{ values.name }}
      title: Repository
spec:
  type: service
  lifecycle: experimental
  owner: ${{ values.owner }}
""",
    "Dockerfile": """\
# Built by the cell's CI pipeline on every push to this repository (a Gitea push webhook of the
# ${{ values.org }} organisation to the Tekton EventListener): ${{ values.image }}:<commit>, signed by Tekton Chains.
FROM ${{ values.baseImage }}
COPY index.html /usr/share/nginx/html/index.html
""",
    "index.html": """\
<!doctype html>
<html><head><title>${{ values.name }}</title></head>
<body><h1>${{ values.name }}</h1><p>${{ values.description }}</p></body></html>
""",
    "deploy/kustomization.yaml": """\
# Argo CD deploys this directory as the Application ${{ values.application }} (the cell's ApplicationSet
# creates it for every repository of ${{ values.org }} that has deploy/kustomization.yaml).
# Every push builds ${{ values.image }}:<commit>; set newTag to the commit you want to run.
apiVersion: kustomize.config.k8s.io/v1beta1
kind: Kustomization
resources:
  - deployment.yaml
  - service.yaml
images:
  - name: app
    newName: ${{ values.image }}
    newTag: "${{ values.initialTag }}"
""",
    "deploy/deployment.yaml": """\
apiVersion: apps/v1
kind: Deployment
metadata:
  name: ${{ values.name }}
  labels:
    app.kubernetes.io/name: ${{ values.name }}
spec:
  replicas: 1
  selector:
    matchLabels:
      app.kubernetes.io/name: ${{ values.name }}
  template:
    metadata:
      labels:
        app.kubernetes.io/name: ${{ values.name }}
    spec:
      securityContext:
        runAsNonRoot: true
        seccompProfile:
          type: RuntimeDefault
      containers:
        - name: app
          image: app
          ports:
            - name: http
              containerPort: 8080
          securityContext:
            allowPrivilegeEscalation: false
            capabilities:
              drop: [ALL]
          readinessProbe:
            httpGet:
              path: /
              port: http
""",
    "deploy/service.yaml": """\
apiVersion: v1
kind: Service
metadata:
  name: ${{ values.name }}
  labels:
    app.kubernetes.io/name: ${{ values.name }}
spec:
  selector:
    app.kubernetes.io/name: ${{ values.name }}
  ports:
    - name: http
      port: 80
      targetPort: http
""",
    "README.md": """\
# ${{ values.name }}

${{ values.description }}

Created from the cell's "New service" template. How it flows:

1. Every push to this repository (organisation `${{ values.org }}` in Gitea) calls the cell's Tekton
   EventListener, which builds the `Dockerfile` into `${{ values.image }}:<commit>`; Tekton Chains signs it.
2. The Argo CD Application `${{ values.application }}` deploys `deploy/` into the namespace `${{ values.name }}`.
   Set `newTag` in `deploy/kustomization.yaml` to a built commit to roll it out.
""",
}
# Service names: a Gitea repository, a namespace and an image name at once (DNS label, at most 40 characters).
SERVICE_NAME_PATTERN = "^[a-z0-9]([a-z0-9-]{0,38}[a-z0-9])?$"


def service_template(options):
    """render_files entries of the software template (template.yaml + skeleton/) under
    ``<options['dir']>/templates/<options['name']>``.

    options: dir, name, owner, gitea_host, org (the CI organisation whose push webhook builds every
    repository), image_prefix (the Harbor CI project), base_image, initial_tag, argocd_domain,
    argocd_namespace, application_prefix.
    """
    base = "%s/templates/%s" % (options["dir"].rstrip("/"), options["name"])
    application = "%s${{ parameters.name }}" % options["application_prefix"]
    template = {
        "apiVersion": TEMPLATE_API,
        "kind": "Template",
        "metadata": {
            "name": options["name"],
            "title": "New service",
            "description": ("A service repository in Gitea (%s/<name>) with its CI pipeline (Tekton builds and signs "
                            "every push) and its Argo CD Application." % options["org"]),
            "tags": ["cellplatform", "gitea", "tekton", "argocd"],
        },
        "spec": {
            "owner": _ref("Group", options["owner"]),
            "type": "service",
            "parameters": [{
                "title": "The service",
                "required": ["name", "owner"],
                "properties": {
                    "name": {"title": "Name", "type": "string", "pattern": SERVICE_NAME_PATTERN,
                             "description": "Repository, namespace and image name (lowercase letters, digits, '-').",
                             "ui:autofocus": True},
                    "description": {"title": "Description", "type": "string", "default": "A new service."},
                    "owner": {"title": "Owner", "type": "string", "ui:field": "OwnerPicker",
                              "ui:options": {"catalogFilter": {"kind": ["Group", "User"]}}},
                },
            }],
            "steps": [
                {"id": "fetch", "name": "Render the skeleton", "action": "fetch:template",
                 "input": {"url": "./skeleton", "values": {
                     "name": "${{ parameters.name }}",
                     "description": "${{ parameters.description }}",
                     "owner": "${{ parameters.owner }}",
                     "org": options["org"],
                     "giteaHost": options["gitea_host"],
                     "image": "%s/${{ parameters.name }}" % options["image_prefix"],
                     "baseImage": options["base_image"],
                     "initialTag": options["initial_tag"],
                     "application": application,
                     "argocdDomain": options["argocd_domain"],
                     "argocdNamespace": options["argocd_namespace"],
                 }}},
                {"id": "publish", "name": "Create the repository in Gitea (its push webhook starts the CI pipeline)",
                 "action": "publish:gitea",
                 "input": {"repoUrl": "%s?owner=%s&repo=${{ parameters.name }}" % (options["gitea_host"], options["org"]),
                           "description": "${{ parameters.description }}", "defaultBranch": "main",
                           "gitCommitMessage": "Create ${{ parameters.name }} from the New service template"}},
                {"id": "register", "name": "Register the service in the catalog", "action": "catalog:register",
                 "input": {"repoContentsUrl": "${{ steps.publish.output.repoContentsUrl }}",
                           "catalogInfoPath": "/catalog-info.yaml"}},
            ],
            "output": {"links": [
                {"title": "Repository", "url": "${{ steps.publish.output.remoteUrl }}"},
                {"title": "Open in the catalog", "icon": "catalog", "entityRef": "${{ steps.register.output.entityRef }}"},
                {"title": "Argo CD Application", "url": "https://%s/applications/%s/%s"
                 % (options["argocd_domain"], options["argocd_namespace"], application)},
            ]},
        },
    }
    files = [{"path": "%s/template.yaml" % base, "documents": [template]}]
    files.extend({"path": "%s/skeleton/%s" % (base, name), "content": SKELETON[name]} for name in sorted(SKELETON))
    return files


def service_applications(options):
    """The AppProject of the services and the ApplicationSet that gives every repository of the CI
    organisation with ``deploy/kustomization.yaml`` its Argo CD Application (Gitea SCM provider).

    options: namespace (Argo CD's), project, gitea_url, org, token_secret, application_prefix, destination_server.
    """
    labels = {"app.kubernetes.io/part-of": "cellplatform", "app.kubernetes.io/managed-by": "cellplatform"}
    project = {
        "apiVersion": "argoproj.io/v1alpha1",
        "kind": "AppProject",
        "metadata": {"name": options["project"], "namespace": options["namespace"], "labels": labels},
        "spec": {
            "description": "Services created from the developer portal's template (Gitea organisation %s)."
                           % options["org"],
            "sourceRepos": ["%s/%s/*" % (options["gitea_url"], options["org"])],
            # A service deploys into its own namespace only; never cluster-scoped objects.
            "destinations": [{"server": options["destination_server"], "namespace": "*"}],
            "clusterResourceWhitelist": [{"group": "", "kind": "Namespace"}],
            "namespaceResourceBlacklist": [{"group": "", "kind": "ResourceQuota"},
                                           {"group": "", "kind": "LimitRange"}],
        },
    }
    appset = {
        "apiVersion": "argoproj.io/v1alpha1",
        "kind": "ApplicationSet",
        "metadata": {"name": options["project"], "namespace": options["namespace"], "labels": labels},
        "spec": {
            "goTemplate": True,
            "goTemplateOptions": ["missingkey=error"],
            "generators": [{"scmProvider": {
                "cloneProtocol": "https",
                "gitea": {"api": options["gitea_url"], "owner": options["org"], "allBranches": False,
                          "tokenRef": {"secretName": options["token_secret"], "key": "token"}},
                "filters": [{"pathsExist": ["deploy/kustomization.yaml"]}],
            }}],
            "template": {
                "metadata": {"name": options["application_prefix"] + "{{ .repository }}",
                             "labels": {"app.kubernetes.io/part-of": "cellplatform-services",
                                        "cellplatform.io/service": "{{ .repository }}"}},
                "spec": {
                    "project": options["project"],
                    "source": {"repoURL": "{{ .url }}", "targetRevision": "{{ .branch }}", "path": "deploy"},
                    "destination": {"server": options["destination_server"], "namespace": "{{ .repository }}"},
                    "syncPolicy": {"automated": {"prune": True, "selfHeal": True},
                                   "syncOptions": ["CreateNamespace=true", "ServerSideApply=true"],
                                   "managedNamespaceMetadata": {"labels": {
                                       "pod-security.kubernetes.io/enforce": "restricted",
                                       "pod-security.kubernetes.io/warn": "restricted"}}},
                },
            },
        },
    }
    return [project, appset]
