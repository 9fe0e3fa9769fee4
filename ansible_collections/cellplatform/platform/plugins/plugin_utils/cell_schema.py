# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The inventory schema: every ``cellplatform_*`` input of a cell, in one place.

Each entry has the shape of an Ansible argument spec option (``type``, ``elements``,
``choices``, ``options`` for nested mappings, ``description``) plus:

``layer``
    the lowest layer that needs it (``l0`` .. ``l7``); the preflight requires a layer's inputs
    only when that layer is selected.
``scope``
    ``host`` for per-node host variables (``hosts.yml``); cell-wide otherwise (``group_vars``).

The roles do not declare these inputs: they read the validated cell model (``cellplatform_cell``)
that ``cellplatform.platform.cell_preflight`` builds from them. ``docs/variables.md`` is generated
from this schema and the roles' own knobs (``scripts/gen-variables-doc.py``).
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import yaml

INVENTORY_SCHEMA = yaml.safe_load(r"""
cellplatform_cell_name:
  layer: l0
  type: str
  description:
    - 'Name of the cell: a lowercase DNS label (RFC 1123); names build/<cell>/, the cluster and the work directory.'
    - Also names the default work directory and Terraform state file.
cellplatform_reference_names:
  layer: l0
  type: dict
  description:
    - The example names of the inventory this one was copied from (the reference inventory declares its own). While
      it is set, the preflight warns about every input that still holds one of them, in apply mode or when the cell
      name is not the example's. Delete it once your site's names are in.
  options:
    cell_name:
      type: str
      description: The example cell name.
    domain:
      type: str
      description: The example DNS domain; any name under it is an example name.
    dns_server:
      type: str
      description: The example DNS server address.
cellplatform_mode:
  layer: l0
  type: str
  choices:
    - render
    - apply
  description:
    - C(render) writes build/<cell>/ only (no cluster, hypervisor or network needed); C(apply) renders, then converges
      the machines and the cluster and gates each layer.
cellplatform_build_root:
  layer: l0
  type: str
  description:
    - Directory the rendered tree goes to; files land in C(<build_root>/<cell>/).
cellplatform_secrets_dir:
  layer: l0
  type: str
  description:
    - Directory of the cell's secrets, every one a SOPS file with age recipients (C(talos-secrets.sops.yaml),
      C(talosconfig.sops.yaml), C(kubeconfig.sops.yaml), C(platform.sops.yaml), C(linkerd-*.sops)) and the
      C(.sops.yaml) creation rules written from C(cellplatform_age_recipients); see docs/secrets.md.
cellplatform_network:
  layer: l0
  type: dict
  description:
    - 'Node network of the cell (IPv4): CIDR, gateway, resolvers, NTP, search domains, MTU and the CEL selector
      of the node NIC.'
  options:
    cidr:
      type: str
      description: Node network in CIDR notation without host bits, a /29 or larger (e.g. C(192.168.100.0/24)).
    gateway:
      type: str
      description: Default gateway (IPv4 inside C(cidr)).
    nameservers:
      type: list
      elements: str
      description: DNS resolvers by IP address (at least one).
    ntp_servers:
      type: list
      elements: str
      description: NTP servers, IP addresses or host names (at least one).
    search_domains:
      type: list
      elements: str
      description: DNS search domains (may be empty); the first is also the VMs' cloud-init search domain.
    mtu:
      type: int
      description: MTU of the node link (1280-9216).
    link_selector:
      type: str
      description: CEL expression selecting the node NIC (Talos LinkAliasConfig), e.g. C(link.driver == "virtio_net").
cellplatform_api_vip:
  layer: l0
  type: str
  description:
    - 'Kubernetes API virtual IP (Talos Layer2VIPConfig on the control planes): a free IPv4 of the node network
      outside the LoadBalancer pool.'
cellplatform_api_port:
  layer: l0
  type: int
  description:
    - Kubernetes API port (1-65535).
cellplatform_api_dns_name:
  layer: l0
  type: str
  description:
    - DNS name of the API VIP (certificate SAN; external-dns publishes it).
cellplatform_lb_pool:
  layer: l0
  type: dict
  description:
    - 'LoadBalancer address pool of MetalLB: a range inside the node network, disjoint from the nodes, the gateway
      and the API VIP.'
  options:
    start:
      type: str
      description: First address (IPv4, inside the node network).
    end:
      type: str
      description: Last address (IPv4, inside the node network, not before C(start)).
cellplatform_pod_cidr:
  layer: l0
  type: str
  description:
    - Pod network (CIDR, disjoint from the node network and the service CIDR).
cellplatform_service_cidr:
  layer: l0
  type: str
  description:
    - Service network (CIDR, at most 2^20 addresses, disjoint from the node network and the pod CIDR).
cellplatform_cluster_dns_domain:
  layer: l0
  type: str
  description:
    - Kubernetes cluster DNS domain (Talos C(cluster.network.dnsDomain)), e.g. C(cluster.local).
    - Written to Talos C(cluster.network.dnsDomain).
cellplatform_talos_version:
  layer: l0
  type: str
  description:
    - 'Talos release C(vMAJOR.MINOR.PATCH) (supported minors: v1.13, v1.14); talosctl must match it.'
cellplatform_kubernetes_version:
  layer: l0
  type: str
  description:
    - Kubernetes version C(MAJOR.MINOR.PATCH) supported by the Talos release (quote it in YAML).
cellplatform_talos_schematic_id:
  layer: l0
  type: str
  description:
    - 64-character hex ID of the Image Factory schematic (the reference one contains siderolabs/qemu-guest-agent,
      siderolabs/iscsi-tools and siderolabs/util-linux-tools).
    - Must be the ID of C(cellplatform_talos_schematic) (the preflight computes it).
cellplatform_talos_schematic:
  layer: l0
  type: dict
  description:
    - 'The customization of the Image Factory schematic C(cellplatform_talos_schematic_id) was made from (what you
      POST to https://factory.talos.dev/schematics): its official system extensions and kernel arguments, in the
      schematic''s order.'
    - The preflight computes the Image Factory's content-addressed ID of exactly this schematic and requires it to
      equal C(cellplatform_talos_schematic_id), so the declared extensions are the ones the nodes boot with.
      Longhorn needs C(siderolabs/iscsi-tools) and C(siderolabs/util-linux-tools).
  options:
    extensions:
      type: list
      elements: str
      description: Official system extensions (C(customization.systemExtensions.officialExtensions)), e.g.
        C(siderolabs/qemu-guest-agent); may be empty.
    extra_kernel_args:
      type: list
      elements: str
      description: Kernel arguments baked into the schematic (C(customization.extraKernelArgs)); optional.
cellplatform_talos_platform:
  layer: l0
  type: str
  choices:
    - nocloud
    - metal
  description:
    - Talos platform of the installer image; C(proxmox) provisioning needs C(nocloud), bare metal uses C(metal)
      (docs/bare-metal.md).
cellplatform_talos_install_disk:
  layer: l0
  type: str
  description:
    - Default install disk of every node (absolute device path such as C(/dev/sda)).
cellplatform_age_recipients:
  layer: l0
  type: list
  elements: str
  description:
    - age public keys (C(age1...)) the cell's secrets are encrypted to; required and non-empty in apply mode.
    - Every SOPS file of the cell (inventory secrets, machine configs, the GitOps tree's Secrets) is encrypted to
      exactly this set, and the C(.sops.yaml) files list it; any change of the set re-encrypts every file.
cellplatform_age_identity:
  layer: l0
  type: str
  description:
    - age identity file sops decrypts the cell's secrets with (C(SOPS_AGE_KEY_FILE)); required in apply mode.
    - Its keys that are recipients also go to Argo CD's repo-server (Secret C(argocd/sops-age)) for KSOPS.
cellplatform_provisioner:
  layer: l0
  type: str
  choices:
    - proxmox
    - none
  description:
    - C(proxmox) creates the VMs with Terraform; C(none) skips Terraform for machines that already boot Talos in
      maintenance mode.
cellplatform_proxmox:
  layer: l0
  type: dict
  description:
    - Proxmox VE API endpoint, node, datastores, bridge and VM ID base; required when C(cellplatform_provisioner)
      is C(proxmox).
    - Terraform variables (endpoint, node, datastores, bridge); VM IDs from C(vm_id_base).
  options:
    endpoint:
      type: str
      description: Proxmox API URL (https), e.g. C(https://pve.example.lan:8006/).
    insecure:
      type: bool
      description: Skip TLS verification of the Proxmox API.
    node_name:
      type: str
      description: Proxmox node the VMs are created on.
    datastore:
      type: str
      description: Datastore of the VM disks (also the boot disk storage of Karpenter's workers).
    image_datastore:
      type: str
      description: Datastore the Talos image is downloaded to.
    bridge:
      type: str
      description: Network bridge of the VM NICs.
    vm_id_base:
      type: int
      description: VM IDs are C(vm_id_base) plus the last octet of the node address (unless C(cellplatform_node_vm_id)
        is set).
cellplatform_node_sizes:
  layer: l0
  type: dict
  description:
    - VM sizes per role for Terraform; required when C(cellplatform_provisioner) is C(proxmox).
    - Terraform VM sizes of the control planes and static workers.
  options:
    controlplane:
      type: dict
      description: Size of each control-plane VM.
      options:
        cores:
          type: int
          description: vCPUs (1-512).
        memory_mib:
          type: int
          description: Memory in MiB (controlplane at least 2048, worker at least 1024).
        disk_gib:
          type: int
          description: Boot disk in GiB (10-65536).
    worker:
      type: dict
      description: Size of each static worker VM.
      options:
        cores:
          type: int
          description: vCPUs (1-512).
        memory_mib:
          type: int
          description: Memory in MiB (controlplane at least 2048, worker at least 1024).
        disk_gib:
          type: int
          description: Boot disk in GiB (10-65536).
        data_disk_gib:
          type: int
          description: Second disk (C(scsi1)) of each static worker VM in GiB for the storage user volume (0 or
            unset = none); with C(cellplatform_storage.volume.type) C(partition) at least its C(min_size_gib).
cellplatform_karpenter:
  layer: l1
  type: dict
  description:
    - Karpenter (Proxmox provider) and the Proxmox cloud-controller-manager; with C(enabled) false nothing else
      is read and nothing is rendered or applied for them.
    - 'Only C(enabled) is read here: it turns on Talos C(cluster.externalCloudProvider) for the Proxmox CCM.'
  options:
    enabled:
      type: bool
      description: Install Karpenter and the Proxmox CCM (also turns on Talos C(cluster.externalCloudProvider) in
        L0).
    min_nodes:
      type: int
      description: Lower bound of dynamic workers (0-100; documented, Karpenter scales from zero).
    max_nodes:
      type: int
      description: Upper bound of dynamic workers (0-100, not below C(min_nodes)); NodePool limits are max_nodes
        times the node size.
    node_cores:
      type: int
      description: vCPUs of one dynamic worker (1-512).
    node_memory_mib:
      type: int
      description: Memory (MiB) of one dynamic worker (at least 1024).
    node_disk_gib:
      type: int
      description: Boot disk (GiB) of one dynamic worker (10-65536).
    proxmox_region:
      type: str
      description: Region name of the Proxmox cluster in the provider and CCM config.
    template_name:
      type: str
      description: Name of the pre-built Proxmox template VM (ProxmoxUnmanagedTemplate).
    address_range:
      type: dict
      description: Addresses dynamic workers may take, disjoint from nodes, VIP, gateway and the LoadBalancer pool;
        mapped to the largest CIDR-aligned block inside it (the IPAM subnet of the template).
      options:
        start:
          type: str
          description: First address (IPv4, inside the node network).
        end:
          type: str
          description: Last address (IPv4, inside the node network, not before C(start)).
cellplatform_gitops:
  layer: l0
  type: dict
  description:
    - GitOps repository the Argo CD Applications of every layer point at; C(path) is also the build-tree directory
      the Applications are written to (C(<path>/<component>.yaml)).
  options:
    repo_url:
      type: str
      description: 'Repository URL: C(https://), C(ssh://) or scp-like C(git@host:org/repo.git) (no plain http).'
    revision:
      type: str
      description: Branch, tag or commit.
    path:
      type: str
      description: Directory of the child Application manifests, relative to the repository root (no C(..)).
    project:
      type: str
      description: Argo CD AppProject every platform Application belongs to (a DNS label); default C(platform).
    namespace:
      type: str
      description: Namespace of Argo CD and its Applications (a DNS label); default C(argocd).
cellplatform_work_dir:
  layer: l0
  type: str
  description:
    - Private directory of this controller for the cell (0700), shared by every layer; default C(~/.cache/cellplatform/<cell>).
      Decrypted files live only in its C(plaintext) subdirectory (0700, files 0600) while the step that needs them
      runs; the next run removes what a killed one left there. Never inside the build tree or the secrets directory.
cellplatform_kubeconfig:
  layer: l0
  type: str
  description:
    - An admin kubeconfig of this cell to use as it is. Unset (the default), L0 fetches one, stores it encrypted as
      C(<secrets_dir>/kubeconfig.sops.yaml) and every layer decrypts it into the plaintext directory for its steps; a
      kubeconfig named here is never written (in apply mode the preflight checks that it exists).
cellplatform_terraform_allow_destroy:
  layer: l0
  type: bool
  description:
    - Allow Terraform plans that delete or replace VMs for this run (default false); pass it with C(-e) when you mean
      it, never set it in the inventory.
cellplatform_upgrade_batch_size:
  layer: l0
  type: int
  description:
    - 'Day 2: how many workers C(playbooks/upgrade.yml) upgrades at the same time (1-100, default 1); control planes
      always go one at a time.'
    - Each batch is drained, upgraded and gated (Ready, etcd healthy) before the next starts.
cellplatform_node_firewall:
  layer: l0
  type: dict
  description:
    - 'Optional (L6 defence in depth, applied by L0 with the machine configs): the Talos ingress firewall of every
      node (C(NetworkDefaultActionConfig) C(block) and one C(NetworkRuleConfig) per service), so that the nodes'' own
      ports (Talos API, Kubernetes API, etcd, kubelet, the CNI and the host-network agents) answer only the sources
      that need them. Off unless C(enabled) is true. The rules are generated from the cell (docs/l6-security.md,
      "Node firewall").'
    - Traffic to LoadBalancer addresses (the shared Gateway, the log receiver) is Cilium's (eBPF, before the host
      firewall) and governed by the network policies, not by these rules.
  options:
    enabled:
      type: bool
      description: Render and apply the firewall (default false).
    admin_networks:
      type: list
      elements: str
      description:
        - Networks (IPv4 CIDR) of the operators and the controller that runs the playbooks, allowed to the Talos API
          (50000) of every node and the Kubernetes API (6443) of the control planes; default the node network. The
          controller must be inside one, or the next run cannot reach the nodes.
    rules:
      type: list
      elements: dict
      description: Extra allowances for the site's own host-network needs, each one C(NetworkRuleConfig).
      options:
        name:
          type: str
          description: The rule's name (a DNS label, not one of the generated rules' names).
        protocol:
          type: str
          choices: [tcp, udp]
          description: The protocol.
        ports:
          type: list
          elements: raw
          description: Ports (1-65535) or inclusive ranges C("<low>-<high>").
        sources:
          type: list
          elements: str
          description: Source networks (IPv4 CIDR), at least one.
        roles:
          type: list
          elements: str
          description: The node roles it applies to, C(controlplane) and/or C(worker) (default both).
cellplatform_node_ip:
  layer: l0
  scope: host
  type: str
  description:
    - 'Host variable of every node: its static IPv4 address inside the node network.'
    - Read through the cell model (node addresses, Terraform, Talos endpoints).
cellplatform_node_install_disk:
  layer: l0
  scope: host
  type: str
  description:
    - 'Optional host variable: install disk of this node instead of C(cellplatform_talos_install_disk).'
    - Read through the cell model (per-node Talos patch).
cellplatform_node_vm_id:
  layer: l0
  scope: host
  type: int
  description:
    - 'Optional host variable: Proxmox VM ID of this node instead of C(vm_id_base) plus the last octet.'
    - Read through the cell model (Terraform VM IDs).
cellplatform_dns_domain:
  layer: l0
  type: str
  description:
    - DNS domain of the cell; every external-dns domain filter must lie within it.
    - Every platform UI is published as C(https://<name>.<dns domain>) through the shared Gateway (its wildcard
      certificate is C(*.<dns domain>)), so L0 already needs it for the routes of its components.
cellplatform_external_dns:
  layer: l1
  type: dict
  description:
    - 'external-dns settings: provider, policy, TXT owner, domain filters and the provider''s server settings (secrets
      come from C(platform.sops.yaml)).'
  options:
    provider:
      type: str
      choices:
        - rfc2136
        - pdns
      description: 'C(rfc2136) (TSIG: BIND, Knot, PowerDNS, Windows) or C(pdns) (PowerDNS HTTP API).'
    policy:
      type: str
      choices:
        - sync
        - upsert-only
        - create-only
      description: Record policy; C(sync) needs C(rfc2136.axfr) with rfc2136.
    txt_owner_id:
      type: str
      description: TXT registry owner id of this cell (letters, digits, C(.), C(_), C(-)).
    domain_filters:
      type: list
      elements: str
      description: Domains external-dns may manage (within C(cellplatform_dns_domain), at least one).
    rfc2136:
      type: dict
      description: RFC2136 server, zone and TSIG key name/algorithm (provider C(rfc2136)); the TSIG secret comes
        from C(platform.sops.yaml).
      options:
        host:
          type: str
          description: DNS server address or host name.
        port:
          type: int
          description: DNS server port (1-65535).
        zone:
          type: str
          description: Zone to update (equal to or a parent of every domain filter).
        tsig_keyname:
          type: str
          description: TSIG key name.
        tsig_algorithm:
          type: str
          choices:
            - hmac-md5
            - hmac-sha1
            - hmac-sha224
            - hmac-sha256
            - hmac-sha384
            - hmac-sha512
          description: TSIG algorithm.
        axfr:
          type: bool
          description: List records by zone transfer (C(--rfc2136-axfr)); required for policy C(sync).
    pdns:
      type: dict
      description: PowerDNS API endpoint (provider C(pdns)); the API key comes from C(platform.sops.yaml).
      options:
        server:
          type: str
          description: PowerDNS API URL (http or https).
        server_id:
          type: str
          description: PowerDNS server id, usually C(localhost).
cellplatform_metallb_bgp:
  layer: l1
  type: bool
  description:
    - MetalLB BGP through the frr-k8s subchart (optional, default false; the reference cell is L2-only).
cellplatform_argocd_domain:
  layer: l2
  type: str
  description:
    - Host name of the Argo CD UI (C(global.domain), HTTPRoute hostname).
cellplatform_policy_mode:
  layer: l2
  type: str
  choices:
    - audit
    - enforce
  description:
    - 'C(audit) or C(enforce): Kyverno validationFailureAction and the ValidatingPolicy validationActions.'
cellplatform_linkerd:
  layer: l2
  type: dict
  description:
    - Linkerd certificate lifetimes in days.
  options:
    trust_anchor_lifetime_days:
      type: int
      description: Trust anchor lifetime (1-36500, longer than the issuer's).
    issuer_lifetime_days:
      type: int
      description: Issuer lifetime (1-3650, shorter than the trust anchor's).
    issuer_renew_before_days:
      type: int
      description: Renew the issuer when it expires within this many days (shorter than the issuer lifetime).
# --- storage, shared Gateway and TLS (storage/TLS/Gateway work) ---------------------------------
cellplatform_storage:
  layer: l0
  type: dict
  description:
    - 'The default StorageClass of the cell: C(longhorn) (replicated block storage; needs the Talos extensions
      siderolabs/iscsi-tools and siderolabs/util-linux-tools) or C(local-path) (node-local directories, no
      replication; for small cells).'
    - Each static worker gets a Talos user volume (C(UserVolumeConfig), mounted at C(/var/mnt/<name>)) the provider
      keeps its data on; Karpenter's dynamic workers never hold data.
  options:
    provider:
      type: str
      choices:
        - longhorn
        - local-path
      description: The storage provider; its StorageClass (C(longhorn) or C(local-path)) becomes the cluster default.
    volume:
      type: dict
      description: The Talos user volume on every static worker.
      options:
        type:
          type: str
          choices:
            - partition
            - directory
          description: C(partition) (a partition on the disk C(disk_selector) picks, sized by C(min_size_gib) and
            C(max_size_gib)) or C(directory) (a directory on the EPHEMERAL volume; no quota, no spare disk needed).
        disk_selector:
          type: str
          description: CEL expression selecting the disk of the partition (Talos C(provisioning.diskSelector.match)),
            e.g. C(!system_disk); C(partition) only.
        min_size_gib:
          type: int
          description: Smallest size of the partition in GiB (1-65536); C(partition) only.
        max_size_gib:
          type: int
          description: Largest size of the partition in GiB (at least C(min_size_gib)); unset = the rest of the disk.
    longhorn:
      type: dict
      description: Longhorn settings (provider C(longhorn)).
      options:
        replicas:
          type: int
          description: Replicas of every volume of the default StorageClass (1 to the number of static workers).
        reserved_percent:
          type: int
          description: Share of each node's disk Longhorn never schedules replicas on (0-90; low for a dedicated
            partition, 25 or more for a directory on EPHEMERAL).
cellplatform_gateway:
  layer: l0
  type: dict
  description:
    - 'The shared Gateway every platform UI is published through (Cilium Gateway API, HTTPS with a wildcard
      certificate for C(*.<dns domain>), HTTP redirected to HTTPS): its fixed LoadBalancer address.'
  options:
    address:
      type: str
      description: The Gateway's IPv4 address, inside C(cellplatform_lb_pool) (reserved there, never handed out
        automatically).
    name:
      type: str
      description: Name of the Gateway object (a DNS label); default C(platform).
    namespace:
      type: str
      description: Its namespace (a DNS label); default C(gateway).
cellplatform_tls:
  layer: l1
  type: dict
  description:
    - 'Where every certificate of the cell comes from: one cert-manager ClusterIssuer, C(acme) (ACME DNS-01 over
      RFC2136 with the DNS server and TSIG key of external-dns) or C(internal-ca) (a root CA the collection creates
      once and keeps encrypted; for offline cells).'
  options:
    issuer:
      type: str
      choices:
        - internal-ca
        - acme
      description: The ClusterIssuer every certificate uses.
    acme:
      type: dict
      description: ACME account (issuer C(acme)); needs C(cellplatform_external_dns.provider) C(rfc2136).
      options:
        server:
          type: str
          description: ACME directory URL (https), e.g. C(https://acme-v02.api.letsencrypt.org/directory).
        email:
          type: str
          description: Contact e-mail address of the ACME account.
    ca:
      type: dict
      description: The internal root CA (issuer C(internal-ca)).
      options:
        lifetime_days:
          type: int
          description: Validity of the root certificate in days (365-36500); it is never regenerated while valid.
# --- L3 delivery: Gitea, Harbor, the image-verification policy (L3 work) --------------------------
cellplatform_gitea:
  layer: l3
  type: dict
  description:
    - 'Gitea (https://gitea.<dns domain>): its admin account (the password is C(gitea_admin_password) in
      C(platform.sops.yaml)), its storage and its CloudNativePG database; and whether this Gitea hosts the GitOps
      repository.'
    - With C(hosted_gitops) true, C(cellplatform_gitops.repo_url) must be C(https://gitea.<dns domain>/<org>/<repo>.git);
      L3 then creates that organisation and repository and pushes the rendered tree to it.
  options:
    hosted_gitops:
      type: bool
      description: Host the GitOps repository in this Gitea (default false, an external repository).
    admin_user:
      type: str
      description: User name of the Gitea admin account L3 configures Gitea with (Gitea's rules; not a reserved
        name such as C(admin)).
    admin_email:
      type: str
      description: E-mail address of the admin account.
    storage_gib:
      type: int
      description: Size of Gitea's data volume (repositories, LFS) in GiB (1-65536, default 20).
    database: &l3_database
      type: dict
      description: Its PostgreSQL cluster (CloudNativePG).
      options:
        instances:
          type: int
          description: PostgreSQL instances (1-9, default 2; one primary, the rest streaming replicas).
        storage_gib:
          type: int
          description: Volume size of each instance in GiB (1-65536, default 10).
cellplatform_harbor:
  layer: l3
  type: dict
  description:
    - 'Harbor (https://harbor.<dns domain>): the proxy-cache projects for the public registries the platform pulls
      from, the project the CI pipeline pushes to, volume sizes and its CloudNativePG database. The admin password is
      C(harbor_admin_password) in C(platform.sops.yaml).'
  options:
    ci_project:
      type: str
      description: Private project the CI pipeline pushes its images to and whose images must be signed (default
        C(ci)).
    proxy_caches:
      type: list
      elements: dict
      description: One proxy-cache project per upstream registry; images are then pulled as
        C(harbor.<dns domain>/<name>/<image>).
      options:
        name:
          type: str
          description: Project (and registry endpoint) name, e.g. C(dockerhub).
        type:
          type: str
          choices:
            - docker-hub
            - docker-registry
            - github-ghcr
            - quay
            - google-gcr
            - harbor
          description: Harbor's registry type of the upstream.
        url:
          type: str
          description: Upstream registry URL (https), e.g. C(https://hub.docker.com).
    storage:
      type: dict
      description: Volume sizes in GiB (1-65536).
      options:
        registry_gib:
          type: int
          description: Image storage (default 50).
        trivy_gib:
          type: int
          description: Trivy's vulnerability database cache (default 5).
        jobservice_gib:
          type: int
          description: Job logs (default 1).
        redis_gib:
          type: int
          description: Harbor's internal Redis (default 1).
    database: *l3_database
cellplatform_image_policy:
  layer: l3
  type: str
  choices:
    - audit
    - enforce
  description:
    - 'C(audit) or C(enforce): the Kyverno ImageValidatingPolicy that requires a valid Tekton Chains signature on
      every image of the Harbor CI project (C(enforce) denies unsigned images).'
# --- observability (L4 observability work) ----------------------------------------------------------
cellplatform_observability:
  layer: l0
  type: dict
  description:
    - 'Observability of the cell (L4): the fixed LoadBalancer address Talos sends its service logs to, and the
      retention and volume size of every store (Prometheus, Alertmanager, Loki, Tempo, Grafana) on the cell''s
      default StorageClass.'
    - L0 renders the Talos logging patch (C(machine.logging)) from C(log_receiver) when it is set; L4 needs the whole
      setting, and the preflight checks that the volumes fit the storage (C(cellplatform_storage)).
  options:
    log_receiver:
      type: dict
      description: The Talos log receiver (Fluent Bit's TCP input behind a MetalLB LoadBalancer Service).
      options:
        address:
          type: str
          description: Its IPv4 address, inside C(cellplatform_lb_pool) and not the Gateway's (reserved there, never
            handed out automatically); every node sends its service logs to it from the host network.
        port:
          type: int
          description: TCP port of the receiver (default 5170).
    prometheus:
      type: dict
      description: Prometheus (kube-prometheus-stack).
      options:
        retention_days:
          type: int
          description: Days of metrics kept (1-3650); Prometheus also stops at 90% of the volume.
        volume_gib:
          type: int
          description: Size of its volume in GiB.
    alertmanager:
      type: dict
      description: Alertmanager (kube-prometheus-stack).
      options:
        volume_gib:
          type: int
          description: Size of its volume in GiB (silences and the notification log).
    loki:
      type: dict
      description: Loki (logs of every pod and every Talos service).
      options:
        retention_days:
          type: int
          description: Days of logs kept (1-3650; the compactor deletes older chunks).
        volume_gib:
          type: int
          description: Size of its volume in GiB.
    tempo:
      type: dict
      description: Tempo (traces).
      options:
        retention_days:
          type: int
          description: Days of traces kept (1-365).
        volume_gib:
          type: int
          description: Size of its volume in GiB.
    grafana:
      type: dict
      description: Grafana.
      options:
        volume_gib:
          type: int
          description: Size of its volume in GiB (its SQLite database).
# --- security (L6 security work) -------------------------------------------------------------------
cellplatform_security:
  layer: l6
  type: dict
  description:
    - 'The RBAC baseline of the cell (L6): the groups bound to the ClusterRoles C(platform-admin) (everything) and
      C(platform-operator) (read everything but Secrets, sync Argo CD Applications), and the teams, each with its
      namespaces (created with the baseline network policies) and the groups bound to C(platform-team) there.'
    - Group names are what the API server's authenticator reports (OIDC groups claim, client certificate O=).
  options:
    admin_groups:
      type: list
      elements: str
      description: Groups bound to C(platform-admin) (cluster-wide, every verb); at least one.
    operator_groups:
      type: list
      elements: str
      description: Groups bound to C(platform-operator) (cluster-wide read without Secrets, Argo CD sync).
    teams:
      type: list
      elements: dict
      description: The teams; each gets its namespaces and a RoleBinding of C(platform-team) per namespace.
      options:
        name:
          type: str
          description: The team's name (a DNS label, unique).
        groups:
          type: list
          elements: str
          description: Groups of the team's members (at least one).
        namespaces:
          type: list
          elements: str
          description: The team's namespaces (DNS labels, at least one, each owned by one team, none of the
            platform's or Kubernetes' own).
# --- L7 developer portal: Backstage (L7 work) ------------------------------------------------------
cellplatform_backstage:
  layer: l7
  type: dict
  description:
    - 'Backstage (https://backstage.<dns domain>): the app image to run and its CloudNativePG database. The chart''s
      default image is a demo without the plugins the platform configures, so the image is required: build your own
      Backstage app (docs/l7-developer-portal.md, "Building the app image") and push it, e.g. to Harbor''s CI project.'
    - Backstage signs users in through the cell's Gitea and reads its catalog from the GitOps repository there, so
      C(cellplatform_gitea.hosted_gitops) must be true.
  options:
    image:
      type: dict
      description: The Backstage app image (C(<registry>/<repository>:<tag>), optionally pinned by digest).
      options:
        registry:
          type: str
          description: Registry host (and port), e.g. C(harbor.cell.lan).
        repository:
          type: str
          description: Repository path in the registry, e.g. C(ci/backstage); not the chart's demo image
            C(ghcr.io/backstage/backstage).
        tag:
          type: str
          description: An exact tag (not C(latest)), e.g. C(1.0.0).
        digest:
          type: str
          description: Optional C(sha256:<64 hex digits>) the tag must resolve to.
    database: *l3_database
# --- resilience (L5 resilience work) -------------------------------------------------------------
cellplatform_resilience:
  layer: l0
  type: dict
  description:
    - 'Resilience of the cell (L5): Velero backups of the platform namespaces (with file-system backup of their
      volumes), scheduled etcd snapshots through the Talos API (siderolabs/talos-backup, age-encrypted), both shipped
      to one S3 object store, and Chaos Mesh with a library of paused experiments.'
    - L0 reads C(enabled) (the control planes allow the etcd snapshot namespace the Talos API role C(os:etcd:backup)
      only when L5 is on); L5 needs the whole setting. The object store's credentials are the platform secrets
      C(object_store_access_key_id) and C(object_store_secret_access_key) (SeaweedFS also
      C(object_store_read_access_key_id) and C(object_store_read_secret_access_key)), see docs/secrets.md.
  options:
    enabled:
      type: bool
      description: C(true) installs L5; C(false) leaves it (and the Talos API access) out.
    object_store:
      type: dict
      description: The S3-compatible object store Velero and the etcd snapshots write to.
      options:
        provider:
          type: str
          choices:
            - seaweedfs
            - external
          description: C(seaweedfs) (SeaweedFS in the cell, one all-in-one pod on a volume of the cell's default
            StorageClass; for cells without an object store; MinIO is archived) or C(external) (an S3 endpoint outside
            the cell, preferred when there is one, since backups then survive the cell).
        bucket:
          type: str
          description: The bucket (S3 naming rules); SeaweedFS creates it, an external store must have it.
        seaweedfs:
          type: dict
          description: SeaweedFS settings (provider C(seaweedfs)).
          options:
            volume_gib:
              type: int
              description: Size in GiB of its volume on the cell's default StorageClass.
        external:
          type: dict
          description: The external endpoint (provider C(external)).
          options:
            endpoint:
              type: str
              description: The S3 API URL (C(https://) only), e.g. C(https://s3.example.org).
            region:
              type: str
              description: The bucket's region (stores that ignore it still need a name, e.g. C(us-east-1)).
            path_style:
              type: bool
              description: C(true) for path-style requests (C(https://host/bucket)), which most self-hosted stores
                need; C(false) for virtual-hosted style.
            ca_bundle:
              type: str
              description: PEM certificate(s) of the CA that signed the endpoint's certificate, when it is private.
    backups:
      type: dict
      description: The daily Velero backup of the platform namespaces.
      options:
        schedule:
          type: str
          description: Five-field cron expression (UTC), e.g. C(0 2 * * *).
        retention_days:
          type: int
          description: Days a backup is kept (1-3650; Velero's TTL, after which it deletes the backup and its data).
    etcd_snapshots:
      type: dict
      description: The etcd snapshot CronJob (siderolabs/talos-backup); snapshots are age-encrypted to the cell's
        first age recipient and written to C(<bucket>/<cell>/etcd/). They are not pruned by the tool; expire them
        with a lifecycle rule of the store.
      options:
        schedule:
          type: str
          description: Five-field cron expression (UTC), e.g. C(0 */6 * * *).
""")

HOST_VARIABLES = tuple(name for name, spec in INVENTORY_SCHEMA.items() if spec.get("scope") == "host")
