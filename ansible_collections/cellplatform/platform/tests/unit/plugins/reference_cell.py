# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The reference cell's inventory variables (inventories/production), shared by the preflight tests."""

from __future__ import annotations

# qemu-guest-agent + iscsi-tools + util-linux-tools (the Image Factory's ID of that schematic)
SCHEMATIC = "53513e54bb39202f35694412577a6bc53d484744d35a126e5d42ef34785c0d83"
EXTENSIONS = ["siderolabs/qemu-guest-agent", "siderolabs/iscsi-tools", "siderolabs/util-linux-tools"]

REFERENCE_VARS = {
    "cellplatform_cell_name": "cell",
    "cellplatform_reference_names": {"cell_name": "cell", "domain": "cell.lan", "dns_server": "192.168.100.1"},
    "cellplatform_mode": "render",
    "cellplatform_build_root": "/srv/repo/inventories/production/../../build",
    "cellplatform_secrets_dir": "/srv/repo/inventories/production/secrets",
    "cellplatform_network": {
        "cidr": "192.168.100.0/24", "gateway": "192.168.100.1", "nameservers": ["192.168.100.1"],
        "ntp_servers": ["192.168.100.1"], "search_domains": ["cell.lan"], "mtu": 1500,
        "link_selector": 'link.driver == "virtio_net"',
    },
    "cellplatform_api_vip": "192.168.100.50",
    "cellplatform_api_port": 6443,
    "cellplatform_api_dns_name": "api.cell.lan",
    "cellplatform_lb_pool": {"start": "192.168.100.200", "end": "192.168.100.250"},
    "cellplatform_pod_cidr": "10.244.0.0/16",
    "cellplatform_service_cidr": "10.96.0.0/16",
    "cellplatform_cluster_dns_domain": "cluster.local",
    "cellplatform_talos_version": "v1.13.9",
    "cellplatform_kubernetes_version": "1.36.3",
    "cellplatform_talos_schematic_id": SCHEMATIC,
    "cellplatform_talos_schematic": {"extensions": list(EXTENSIONS)},
    "cellplatform_talos_platform": "nocloud",
    "cellplatform_talos_install_disk": "/dev/sda",
    "cellplatform_age_recipients": [],
    "cellplatform_age_identity": "~/.config/sops/age/keys.txt",
    "cellplatform_provisioner": "proxmox",
    "cellplatform_proxmox": {
        "endpoint": "https://pve.cell.lan:8006/", "insecure": False, "node_name": "pve1",
        "datastore": "local-lvm", "image_datastore": "local", "bridge": "vmbr0", "vm_id_base": 100,
    },
    "cellplatform_node_sizes": {
        "controlplane": {"cores": 2, "memory_mib": 4096, "disk_gib": 40},
        "worker": {"cores": 4, "memory_mib": 8192, "disk_gib": 80, "data_disk_gib": 100},
    },
    "cellplatform_storage": {
        "provider": "longhorn",
        "volume": {"type": "partition", "disk_selector": "!system_disk", "min_size_gib": 50},
        "longhorn": {"replicas": 3, "reserved_percent": 10},
    },
    "cellplatform_dns_domain": "cell.lan",
    "cellplatform_gateway": {"address": "192.168.100.200"},
    "cellplatform_external_dns": {
        "provider": "rfc2136", "policy": "upsert-only", "txt_owner_id": "cell", "domain_filters": ["cell.lan"],
        "rfc2136": {"host": "192.168.100.1", "port": 53, "zone": "cell.lan", "tsig_keyname": "externaldns-key",
                    "tsig_algorithm": "hmac-sha256", "axfr": True},
        "pdns": {"server": "http://192.168.100.1:8081", "server_id": "localhost"},
    },
    "cellplatform_karpenter": {
        "enabled": True, "min_nodes": 0, "max_nodes": 10, "node_cores": 4, "node_memory_mib": 8192,
        "node_disk_gib": 40, "proxmox_region": "pve", "template_name": "talos-nocloud",
        "address_range": {"start": "192.168.100.100", "end": "192.168.100.149"},
    },
    "cellplatform_tls": {
        "issuer": "internal-ca", "ca": {"lifetime_days": 3650},
        "acme": {"server": "https://acme-v02.api.letsencrypt.org/directory", "email": "platform@cell.lan"},
    },
    "cellplatform_gitops": {"repo_url": "https://gitea.cell.lan/platform/cell.git", "revision": "main", "path": "apps"},
    "cellplatform_argocd_domain": "argocd.cell.lan",
    "cellplatform_policy_mode": "audit",
    "cellplatform_linkerd": {"trust_anchor_lifetime_days": 3650, "issuer_lifetime_days": 365,
                             "issuer_renew_before_days": 30},
    "cellplatform_gitea": {"hosted_gitops": True, "admin_user": "gitea-admin", "admin_email": "platform@cell.lan",
                           "storage_gib": 20, "database": {"instances": 2, "storage_gib": 10}},
    "cellplatform_harbor": {
        "ci_project": "ci",
        "proxy_caches": [{"name": "dockerhub", "type": "docker-hub", "url": "https://hub.docker.com"},
                         {"name": "ghcr", "type": "github-ghcr", "url": "https://ghcr.io"},
                         {"name": "quay", "type": "quay", "url": "https://quay.io"},
                         {"name": "k8s", "type": "docker-registry", "url": "https://registry.k8s.io"}],
        "storage": {"registry_gib": 50, "trivy_gib": 5, "jobservice_gib": 1, "redis_gib": 1},
        "database": {"instances": 2, "storage_gib": 10},
    },
    "cellplatform_image_policy": "audit",
    "cellplatform_observability": {
        "log_receiver": {"address": "192.168.100.201", "port": 5170},
        "prometheus": {"retention_days": 15, "volume_gib": 15}, "alertmanager": {"volume_gib": 1},
        "loki": {"retention_days": 14, "volume_gib": 15}, "tempo": {"retention_days": 7, "volume_gib": 5},
        "grafana": {"volume_gib": 1},
    },
    "cellplatform_security": {"admin_groups": ["platform-admins"], "operator_groups": ["platform-operators"],
                              "teams": [{"name": "shop", "groups": ["shop-developers"], "namespaces": ["shop"]}]},
    # L7 developer portal
    "cellplatform_backstage": {"image": {"registry": "harbor.cell.lan", "repository": "ci/backstage", "tag": "1.0.0"},
                               "database": {"instances": 2, "storage_gib": 5}},
    # L5 resilience
    "cellplatform_resilience": {
        "enabled": True,
        "object_store": {"provider": "seaweedfs", "bucket": "cell-backups", "seaweedfs": {"volume_gib": 40}},
        "backups": {"schedule": "0 2 * * *", "retention_days": 14},
        "etcd_snapshots": {"schedule": "0 */6 * * *"},
    },
}
