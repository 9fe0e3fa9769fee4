# cellplatform Proxmox root module: one Talos nocloud image, one VM per node.
# Facts and pitfalls: ../shared/docs/platform-brief.md section 4 (pitfalls 10-13).

locals {
  # Image Factory serves .raw.xz and .raw.gz; Proxmox download-url cannot decompress xz, so
  # fetch .raw.gz and let Proxmox gunzip it (pitfall 12). The nocloud platform (not metal)
  # reads the Proxmox cloud-init drive for the static address (pitfall 10).
  talos_image_url = "https://factory.talos.dev/image/${var.schematic_id}/${var.talos_version}/nocloud-amd64.raw.gz"
  # .img: PVE < 8.4 rejects .raw with "wrong file extension". The schematic prefix keeps images
  # of different schematics apart on the datastore.
  talos_image_file = "talos-${var.talos_version}-${substr(var.schematic_id, 0, 12)}-nocloud-amd64.img"
}

resource "proxmox_download_file" "talos" {
  node_name               = var.proxmox.node_name
  datastore_id            = var.proxmox.image_datastore
  content_type            = "iso"
  file_name               = local.talos_image_file
  url                     = local.talos_image_url
  decompression_algorithm = "gz"
  # The decompressed file never matches the size the URL reports; overwrite = true would
  # download it again on every run.
  overwrite = false
}

resource "proxmox_virtual_environment_vm" "node" {
  for_each = var.nodes

  name        = each.key
  description = "Talos ${each.value.role} of cell ${var.cell_name}. Managed by cellplatform (Terraform); do not edit by hand."
  node_name   = var.proxmox.node_name
  vm_id       = each.value.vm_id
  # Proxmox sorts tags; an unsorted list would show a change on every plan.
  tags = sort(distinct(["talos", var.cell_name, each.value.role]))

  machine         = "q35"
  bios            = "ovmf"
  on_boot         = true
  started         = true
  stop_on_destroy = true
  # VirtIO SCSI, NOT virtio-scsi-single: Talos bootstrap hangs on the single controller
  # (pitfall 11, siderolabs/talos#11173).
  scsi_hardware = "virtio-scsi-pci"
  boot_order    = ["scsi0"]

  operating_system {
    type = "l26"
  }

  # Only with the siderolabs/qemu-guest-agent extension in the schematic; without it the
  # provider waits 15 minutes for IP addresses that never come (pitfall 13).
  agent {
    enabled = var.qemu_guest_agent
  }

  cpu {
    cores   = each.value.cores
    sockets = 1
    type    = "host"
  }

  memory {
    dedicated = each.value.memory_mib
    floating  = 0 # ballooning off: Talos has no memory hotplug
  }

  efi_disk {
    datastore_id      = var.proxmox.datastore
    file_format       = "raw"
    type              = "4m"
    pre_enrolled_keys = false
  }

  # The boot disk is imported from the nocloud image and grown to disk_gib.
  disk {
    datastore_id = var.proxmox.datastore
    interface    = "scsi0"
    file_id      = proxmox_download_file.talos.id
    file_format  = "raw"
    size         = each.value.disk_gib
    discard      = "on"
    ssd          = true
    iothread     = false # iothread needs virtio-scsi-single, which Talos cannot use
  }

  # The storage user volume's disk (workers with data_disk_gib > 0): Talos finds it with the
  # inventory's disk selector (e.g. !system_disk) and formats it; Terraform only attaches it.
  dynamic "disk" {
    for_each = each.value.data_disk_gib > 0 ? [each.value.data_disk_gib] : []
    content {
      datastore_id = var.proxmox.datastore
      interface    = "scsi1"
      file_format  = "raw"
      size         = disk.value
      discard      = "on"
      ssd          = true
      iothread     = false
    }
  }

  network_device {
    bridge = var.proxmox.bridge
    model  = "virtio"
  }

  # Proxmox cloud-init drive -> Talos "nocloud" platform: each VM comes up in maintenance mode
  # on its final static address, so talosctl apply-config --insecure works without DHCP.
  initialization {
    datastore_id = var.proxmox.datastore

    ip_config {
      ipv4 {
        address = "${each.value.ip}/${var.network.prefix_length}"
        gateway = var.network.gateway
      }
    }

    dns {
      servers = var.network.nameservers
      domain  = var.network.search_domain
    }
  }

  # Serial console for debugging (qm terminal <vmid>).
  serial_device {}

  lifecycle {
    # The image only matters for the first boot; Talos upgrades happen in place through
    # talosctl upgrade. A new talos_version or schematic must not replace running nodes.
    ignore_changes = [disk[0].file_id]
  }
}
