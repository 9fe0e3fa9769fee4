# Input contract: exactly the keys of build/<cell>/terraform/cell.auto.tfvars.json, rendered by
# the l0_infrastructure role (see README.md). No secrets here; the API token comes from the
# PROXMOX_VE_API_TOKEN environment variable.

variable "cell_name" {
  description = "Name of the cell; tags every VM and names the Talos image file."
  type        = string

  validation {
    condition     = can(regex("^[a-z0-9]([a-z0-9-]{0,30}[a-z0-9])?$", var.cell_name))
    error_message = "cell_name must be a lower-case DNS label of at most 32 characters (it becomes a Proxmox tag), e.g. \"cell\"."
  }
}

variable "talos_version" {
  description = "Talos release of the boot image, e.g. v1.13.9."
  type        = string

  validation {
    condition     = can(regex("^v[0-9]+\\.[0-9]+\\.[0-9]+$", var.talos_version))
    error_message = "talos_version must look like v1.13.9 (with the leading v)."
  }
}

variable "schematic_id" {
  description = "Image Factory schematic ID (64 hex characters) of the nocloud image."
  type        = string

  validation {
    condition     = can(regex("^[0-9a-f]{64}$", var.schematic_id))
    error_message = "schematic_id must be the 64-character hex ID that POST https://factory.talos.dev/schematics returned."
  }
}

variable "qemu_guest_agent" {
  description = "True only when the schematic contains siderolabs/qemu-guest-agent; enables the Proxmox agent option."
  type        = bool
}

variable "proxmox" {
  description = "Proxmox VE API endpoint and where the VMs and the image live."
  type = object({
    endpoint        = string
    insecure        = bool
    node_name       = string
    datastore       = string
    image_datastore = string
    bridge          = string
  })

  validation {
    condition     = can(regex("^https://[^/]+(:[0-9]+)?/?$", var.proxmox.endpoint))
    error_message = "proxmox.endpoint must be the API base URL, e.g. https://pve.cell.lan:8006/ (https, no path)."
  }

  validation {
    condition = alltrue([
      for v in [var.proxmox.node_name, var.proxmox.datastore, var.proxmox.image_datastore, var.proxmox.bridge] :
      can(regex("^[A-Za-z0-9][A-Za-z0-9._-]*$", v))
    ])
    error_message = "proxmox.node_name, datastore, image_datastore and bridge must be non-empty Proxmox identifiers (letters, digits, '.', '_', '-')."
  }
}

variable "network" {
  description = "Node network handed to the VMs through the cloud-init drive (Talos nocloud)."
  type = object({
    prefix_length = number
    gateway       = string
    nameservers   = list(string)
    search_domain = string
  })

  validation {
    condition     = var.network.prefix_length >= 8 && var.network.prefix_length <= 30 && floor(var.network.prefix_length) == var.network.prefix_length
    error_message = "network.prefix_length must be an integer between 8 and 30."
  }

  validation {
    condition     = can(cidrhost("${var.network.gateway}/32", 0))
    error_message = "network.gateway must be an IPv4 address, e.g. 192.168.100.1."
  }

  validation {
    condition     = length(var.network.nameservers) > 0 && alltrue([for ns in var.network.nameservers : can(cidrhost("${ns}/32", 0))])
    error_message = "network.nameservers must be a non-empty list of IPv4 addresses."
  }
}

variable "nodes" {
  description = "Node name => VM id, static IPv4 address, role, size and the size of its data disk (0 = none)."
  type = map(object({
    vm_id         = number
    ip            = string
    role          = string
    cores         = number
    memory_mib    = number
    disk_gib      = number
    data_disk_gib = number
  }))

  validation {
    condition     = length(var.nodes) > 0
    error_message = "nodes must hold at least one node."
  }

  validation {
    condition     = alltrue([for name, n in var.nodes : can(regex("^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$", name))])
    error_message = "Every key of nodes must be a lower-case DNS label (it becomes the VM name and the hostname)."
  }

  validation {
    condition     = alltrue([for n in var.nodes : n.vm_id >= 100 && n.vm_id <= 999999999 && floor(n.vm_id) == n.vm_id])
    error_message = "nodes[*].vm_id must be an integer between 100 and 999999999 (Proxmox VM id range)."
  }

  validation {
    condition     = length(distinct([for n in var.nodes : n.vm_id])) == length(var.nodes)
    error_message = "nodes[*].vm_id must be unique."
  }

  validation {
    condition     = alltrue([for n in var.nodes : can(cidrhost("${n.ip}/32", 0))])
    error_message = "nodes[*].ip must be an IPv4 address without prefix, e.g. 192.168.100.51."
  }

  validation {
    condition     = length(distinct([for n in var.nodes : n.ip])) == length(var.nodes)
    error_message = "nodes[*].ip must be unique."
  }

  validation {
    condition     = alltrue([for n in var.nodes : contains(["controlplane", "worker"], n.role)])
    error_message = "nodes[*].role must be controlplane or worker."
  }

  validation {
    condition = alltrue([
      for n in var.nodes : n.role == "controlplane" ? (n.cores >= 2 && n.memory_mib >= 2048) : (n.cores >= 1 && n.memory_mib >= 1024)
    ])
    error_message = "nodes[*] is below the Talos minimum: control planes need 2 cores and 2048 MiB, workers 1 core and 1024 MiB (the Talos Proxmox guide recommends 2 cores/4 GiB and 4 cores/8 GiB)."
  }

  validation {
    condition     = alltrue([for n in var.nodes : n.disk_gib >= 10 && floor(n.disk_gib) == n.disk_gib])
    error_message = "nodes[*].disk_gib must be a whole number of at least 10 (Talos needs 10 GiB for its system partitions)."
  }

  validation {
    condition     = alltrue([for n in var.nodes : n.data_disk_gib >= 0 && floor(n.data_disk_gib) == n.data_disk_gib])
    error_message = "nodes[*].data_disk_gib must be a whole number of GiB, 0 for no data disk."
  }
}
