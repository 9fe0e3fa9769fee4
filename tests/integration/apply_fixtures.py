"""Fixtures for apply-path tests: chart fixtures for the helm double, a secrets directory of SOPS
files (the real sops, a real age key), and a runner for ansible-playbook against the test doubles.

Reusable by every layer's apply test (L1 here, L2 next):

* ``write_chart(charts_dir, name, version, app_version, objects)`` writes a helm-double chart
  fixture (``<name>-<version>.yaml``: Chart.yaml metadata + the objects "the chart" creates).
* ``crd(group, kind, plural, versions, scope)``, ``deployment(name)``, ``daemonset(name)``,
  ``webhook(...)`` build the minimal objects a chart's install leaves in the cluster
  (``{{NAMESPACE}}``/``{{RELEASE}}`` are filled in by the double).
* ``SecretsDir`` creates an age identity and the SOPS files ``kubeconfig.sops.yaml``,
  ``platform.sops.yaml`` and ``talos-secrets.sops.yaml`` with unique marker values, so a test
  can grep for every secret value afterwards (``SecretsDir.secret_values``); ``write`` (re)writes
  one of them, ``read`` decrypts one.
* ``run_playbook(...)`` runs ansible-playbook with the doubles first on PATH and returns
  (rc, combined output).
* ``gateway_api_crds()``, ``preinstall(api, objects)`` put into the fake API what a lower layer
  left there (the Gateway API CRDs and GatewayClass of L0 for L1 and L2); ``Conditions`` plays
  the controllers that report a condition on objects once they exist (cert-manager, Cilium);
  ``Player`` is the base of such background players.
"""

from __future__ import annotations

import json
import os
import re
import secrets as pysecrets
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[2]
COLLECTION = REPO / "ansible_collections" / "cellplatform" / "platform"
DOUBLES = REPO / "tests" / "doubles"
sys.path.insert(0, str(DOUBLES))
sys.path.insert(0, str(REPO))

from ansible_collections.cellplatform.platform.plugins.module_utils import sops as sops_utils  # noqa: E402


def crd(group, kind, plural, versions=("v1",), scope="Namespaced"):
    return {
        "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
        "metadata": {"name": "%s.%s" % (plural, group)},
        "spec": {"group": group, "scope": scope,
                 "names": {"kind": kind, "plural": plural, "singular": kind.lower(), "listKind": kind + "List"},
                 "versions": [{"name": v, "served": True, "storage": i == 0,
                               "schema": {"openAPIV3Schema": {"type": "object",
                                                              "x-kubernetes-preserve-unknown-fields": True}}}
                              for i, v in enumerate(versions)]},
    }


def deployment(name, replicas=1):
    return {"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": name, "namespace": "{{NAMESPACE}}"},
            "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": name}},
                     "template": {"metadata": {"labels": {"app": name}},
                                  "spec": {"containers": [{"name": name, "image": "example.invalid/%s" % name}]}}}}


def statefulset(name, replicas=1):
    return {"apiVersion": "apps/v1", "kind": "StatefulSet",
            "metadata": {"name": name, "namespace": "{{NAMESPACE}}"},
            "spec": {"replicas": replicas, "serviceName": name, "selector": {"matchLabels": {"app": name}},
                     "template": {"metadata": {"labels": {"app": name}},
                                  "spec": {"containers": [{"name": name, "image": "example.invalid/%s" % name}]}}}}


def daemonset(name):
    return {"apiVersion": "apps/v1", "kind": "DaemonSet",
            "metadata": {"name": name, "namespace": "{{NAMESPACE}}"},
            "spec": {"selector": {"matchLabels": {"app": name}},
                     "template": {"metadata": {"labels": {"app": name}},
                                  "spec": {"containers": [{"name": name, "image": "example.invalid/%s" % name}]}}}}


def webhook(config_name, service, group, version, resources):
    """A Service, its (not yet ready) EndpointSlice and a ValidatingWebhookConfiguration."""
    return [
        {"apiVersion": "v1", "kind": "Service", "metadata": {"name": service, "namespace": "{{NAMESPACE}}"},
         "spec": {"ports": [{"port": 443, "targetPort": 9443}], "selector": {"app": service}}},
        {"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
         "metadata": {"name": service + "-abcde", "namespace": "{{NAMESPACE}}",
                      "labels": {"kubernetes.io/service-name": service}},
         "addressType": "IPv4",
         "endpoints": [{"addresses": ["10.244.1.10"], "conditions": {"ready": False}}],
         "ports": [{"port": 9443, "protocol": "TCP"}]},
        {"apiVersion": "admissionregistration.k8s.io/v1", "kind": "ValidatingWebhookConfiguration",
         "metadata": {"name": config_name},
         "webhooks": [{"name": "%s.%s" % (resources[0], group), "sideEffects": "None",
                       "admissionReviewVersions": ["v1"], "failurePolicy": "Fail",
                       "clientConfig": {"service": {"name": service, "namespace": "{{NAMESPACE}}",
                                                    "path": "/validate"}},
                       "rules": [{"apiGroups": [group], "apiVersions": [version], "resources": list(resources),
                                  "operations": ["CREATE", "UPDATE"]}]}]},
    ]


def write_chart(charts_dir, name, version, app_version, objects):
    charts_dir = Path(charts_dir)
    charts_dir.mkdir(parents=True, exist_ok=True)
    data = {"chart": {"apiVersion": "v2", "name": name, "version": version, "appVersion": app_version,
                      "description": "helm double fixture for %s" % name},
            "manifest": objects}
    (charts_dir / ("%s-%s.yaml" % (name, version))).write_text(yaml.safe_dump(data, sort_keys=False))


def l1_charts(charts_dir):
    """Chart fixtures for the L1 charts at the versions the role pins."""
    write_chart(charts_dir, "metallb", "0.16.1", "v0.16.1", [
        crd("metallb.io", "IPAddressPool", "ipaddresspools", ("v1beta1",)),
        crd("metallb.io", "L2Advertisement", "l2advertisements", ("v1beta1",)),
        crd("metallb.io", "BGPPeer", "bgppeers", ("v1beta2", "v1beta1")),
        deployment("metallb-controller"),
        daemonset("metallb-speaker"),
    ] + webhook("metallb-webhook-configuration", "metallb-webhook-service", "metallb.io", "v1beta1",
                ["ipaddresspools", "l2advertisements"]))
    write_chart(charts_dir, "external-dns", "1.21.1", "0.21.0", [
        crd("externaldns.k8s.io", "DNSEndpoint", "dnsendpoints", ("v1alpha1",)),
        deployment("external-dns"),
    ])
    write_chart(charts_dir, "cert-manager", "v1.21.1", "v1.21.1", [
        crd("cert-manager.io", "Certificate", "certificates"),
        crd("cert-manager.io", "CertificateRequest", "certificaterequests"),
        crd("cert-manager.io", "Issuer", "issuers"),
        crd("cert-manager.io", "ClusterIssuer", "clusterissuers", ("v1",), "Cluster"),
        crd("acme.cert-manager.io", "Order", "orders"),
        crd("acme.cert-manager.io", "Challenge", "challenges"),
        deployment("cert-manager", 2), deployment("cert-manager-webhook", 2), deployment("cert-manager-cainjector", 2),
    ] + webhook("cert-manager-webhook", "cert-manager-webhook", "cert-manager.io", "v1",
                ["certificates", "clusterissuers"]))
    write_chart(charts_dir, "proxmox-cloud-controller-manager", "0.2.18", "v0.11.0", [
        deployment("proxmox-cloud-controller-manager"),
    ])
    write_chart(charts_dir, "karpenter-provider-proxmox", "0.4.9", "v0.12.0", [
        crd("karpenter.sh", "NodePool", "nodepools", ("v1",), "Cluster"),
        crd("karpenter.sh", "NodeClaim", "nodeclaims", ("v1",), "Cluster"),
        crd("karpenter.proxmox.sinextra.dev", "ProxmoxNodeClass", "proxmoxnodeclasses", ("v1alpha1",), "Cluster"),
        crd("karpenter.proxmox.sinextra.dev", "ProxmoxUnmanagedTemplate", "proxmoxunmanagedtemplates",
            ("v1alpha1",), "Cluster"),
        deployment("karpenter-provider-proxmox"),
    ])


# The Gateway API kinds L0 installs (gateway-api-crds: our own minimal CRDs of the same names, not
# upstream's files), with the scopes and versions the upstream standard channel has.
GATEWAY_API_KINDS = [("GatewayClass", "gatewayclasses", "Cluster"), ("Gateway", "gateways", "Namespaced"),
                     ("HTTPRoute", "httproutes", "Namespaced"), ("GRPCRoute", "grpcroutes", "Namespaced"),
                     ("ReferenceGrant", "referencegrants", "Namespaced"),
                     ("BackendTLSPolicy", "backendtlspolicies", "Namespaced"),
                     ("ListenerSet", "listenersets", "Namespaced"), ("TCPRoute", "tcproutes", "Namespaced"),
                     ("TLSRoute", "tlsroutes", "Namespaced"), ("UDPRoute", "udproutes", "Namespaced")]


def gateway_api_crds():
    return [crd("gateway.networking.k8s.io", kind, plural, ("v1",), scope) for kind, plural, scope in GATEWAY_API_KINDS]


def gateway_class():
    """What the Cilium chart creates in L0."""
    return {"apiVersion": "gateway.networking.k8s.io/v1", "kind": "GatewayClass", "metadata": {"name": "cilium"},
            "spec": {"controllerName": "io.cilium/gateway-controller"}}


def _post(api, obj):
    from fake_kube_api import BUILTIN
    group_version = obj["apiVersion"]
    plural = next((p for gv, k, p, _n in BUILTIN if (gv, k) == (group_version, obj["kind"])), None) or next(
        (p for k, p, _s in GATEWAY_API_KINDS if k == obj["kind"]), None) or obj["kind"].lower() + "s"
    prefix = "/api/" if "/" not in group_version else "/apis/"
    ns = obj["metadata"].get("namespace")
    path = "%s%s/%s%s" % (prefix, group_version, "namespaces/%s/" % ns if ns else "", plural)
    req = urllib.request.Request(api.url + path, data=json.dumps(obj).encode(), method="POST",
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=10) as resp:  # loopback only (fake API on 127.0.0.1)
        return json.loads(resp.read())


def preinstall(api, objects):
    """Create what a lower layer (or a controller) left in the cluster, through the API, in order:
    a CRD is Established at once; a custom resource's plural is its kind + "s" unless it is a
    built-in or Gateway API kind."""
    for obj in objects:
        _post(api, obj)
        if obj["kind"] == "CustomResourceDefinition":
            api.establish(obj["metadata"]["name"])


class Player(object):
    """A background thread that plays a controller of the cell against the fake API while a
    playbook runs (``_run`` polls until ``self.stop`` is set). Use as a context manager."""

    def __init__(self):
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):  # pragma: no cover - overridden
        raise NotImplementedError

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        self.thread.join(5)


class Conditions(Player):
    """Plays controllers: once an object exists, set its condition after ``delay`` seconds.

    ``wanted``: [(api_version, kind, name, namespace, condition type)]. Use as a context manager;
    ``set_at[want]`` is the seq of the last API event before the condition was set.
    """

    def __init__(self, api, wanted, delay=1.0):
        super().__init__()
        self.api, self.wanted, self.delay = api, list(wanted), delay
        self.set_at = {}

    def _run(self):
        seen = {}
        while not self.stop.is_set() and len(self.set_at) < len(self.wanted):
            for want in self.wanted:
                if want in self.set_at:
                    continue
                if self.api.get(want[0], want[1], want[2], want[3]):
                    seen.setdefault(want, time.monotonic())
                    if time.monotonic() - seen[want] >= self.delay:
                        # the last API event before the condition: what came later saw it
                        self.set_at[want] = len(self.api.events)
                        self.api.set_condition(*want)
            self.stop.wait(0.2)


class SecretsDir(object):
    """An age identity plus the SOPS-encrypted secrets an apply run reads; every value is unique."""

    def __init__(self, root, kubeconfig):
        import pyrage
        self.root = Path(root)
        self.dir = self.root / "secrets"
        self.dir.mkdir(parents=True, exist_ok=True)
        ident = pyrage.x25519.Identity.generate()
        self.identity = self.root / "age-keys.txt"
        self.identity.write_text("# test identity\n%s\n" % ident)
        os.chmod(self.identity, 0o600)
        self.recipient = str(ident.to_public())

        def marker(what):
            return "%s-%s" % (what, pysecrets.token_hex(12))

        # docs/secrets.md: the platform secrets' keys; Proxmox tokens are "user@realm!id=secret".
        self.proxmox_token_secret = marker("PVETOKEN")
        self.platform = {
            "external_dns_tsig_secret": marker("TSIGSECRET"),
            "external_dns_pdns_api_key": marker("PDNSKEY"),
            "proxmox_api_token": "kubernetes@pve!cell=%s" % self.proxmox_token_secret,
            "gitops_repo_password": marker("GITPASSWORD"),
        }
        self.talos = {
            "cluster": {"id": marker("CLUSTERID"), "secret": marker("CLUSTERSECRET")},
            "secrets": {"bootstraptoken": marker("BOOTSTRAP"), "secretboxencryptionsecret": marker("SECRETBOX")},
            "trustdinfo": {"token": marker("MACHINETOKEN")},
            "certs": {"os": {"crt": marker("OSCACRT"), "key": marker("OSCAKEY")}},
        }
        self.write("kubeconfig.sops.yaml", yaml.safe_dump(kubeconfig))
        self.write("platform.sops.yaml", yaml.safe_dump(self.platform))
        self.write("talos-secrets.sops.yaml", yaml.safe_dump(self.talos))

    def write(self, name, text):
        """(Re)write the SOPS file ``name`` of the secrets directory with ``text``."""
        path = self.dir / name
        path.write_bytes(sops_utils.Sops(str(self.identity)).encrypt(text, [self.recipient], str(path)))

    def read(self, name):
        """The plaintext (bytes) of the SOPS file ``name``."""
        return sops_utils.decrypt_file(str(self.dir / name), str(self.identity))

    @property
    def secret_values(self):
        """Every value that must never appear in build/, logs or git (the CA cert is public
        in real life but is a unique marker here, so it is checked as well)."""
        return [
            self.platform["external_dns_tsig_secret"], self.platform["external_dns_pdns_api_key"],
            self.proxmox_token_secret, self.platform["gitops_repo_password"],
            self.talos["cluster"]["secret"], self.talos["trustdinfo"]["token"], self.talos["cluster"]["id"],
            "fake-kube-api-token",
        ]


def apply_run_setup(tmp, secrets, charts, **extra_vars):
    """Environment and extra vars for an apply-mode run of a layer playbook against the helm
    double (state in tmp/helm-state, charts from ``charts``) and the cell's encrypted secrets.
    Returns (env, extra, helm_state_dir, build_root); ``extra_vars`` add role knobs."""
    state = Path(tmp) / "helm-state"
    build_root = Path(tmp) / "build"
    (Path(tmp) / "home").mkdir()
    env = {"HELM_DOUBLE_STATE": str(state), "HELM_DOUBLE_CHARTS": str(charts), "TMPDIR": str(tmp),
           "HOME": str(Path(tmp) / "home")}
    extra = {
        "cellplatform_mode": "apply",
        "cellplatform_build_root": str(build_root),
        "cellplatform_secrets_dir": str(secrets.dir),
        "cellplatform_age_identity": str(secrets.identity),
        "cellplatform_age_recipients": [secrets.recipient],
        "cellplatform_work_dir": str(Path(tmp) / "work"),
    }
    extra.update(extra_vars)
    return env, extra, state, build_root


RECAP = re.compile(r"localhost\s+: ok=(\d+)\s+changed=(\d+)\s+unreachable=(\d+)\s+failed=(\d+)")


def recap(output):
    """localhost's PLAY RECAP counts of an ansible-playbook run."""
    m = RECAP.search(output)
    assert m, output[-3000:]
    return dict(zip(("ok", "changed", "unreachable", "failed"), map(int, m.groups())))


def helm_calls(state):
    """Every invocation the helm double recorded in its state directory."""
    path = Path(state) / "calls.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def run_playbook(playbook, env_extra, extra_vars, args=(), cwd=REPO):
    env = dict(os.environ)
    env.update({
        "PATH": "%s:%s:%s" % (DOUBLES, Path(sys.executable).parent, env.get("PATH", "")),
        "ANSIBLE_COLLECTIONS_PATH": str(REPO),
        "ANSIBLE_NOCOLOR": "1",
        "ANSIBLE_FORCE_COLOR": "0",
        "ANSIBLE_DEPRECATION_WARNINGS": "0",
    })
    env.update(env_extra)
    cmd = [str(Path(sys.executable).parent / "ansible-playbook"), "-i", str(REPO / "inventories/production/hosts.yml"),
           str(REPO / playbook), "-e", json.dumps(extra_vars)]
    cmd.extend(args)
    proc = subprocess.run(cmd, cwd=str(cwd), env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          text=True, timeout=600)
    return proc.returncode, proc.stdout
