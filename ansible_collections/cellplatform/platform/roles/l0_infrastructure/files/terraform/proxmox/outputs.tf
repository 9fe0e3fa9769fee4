output "vm_ids" {
  description = "Node name => Proxmox VM id."
  value       = { for name, vm in proxmox_virtual_environment_vm.node : name => vm.vm_id }
}

output "node_ips" {
  description = "Node name => static IPv4 address given through cloud-init."
  value       = { for name, node in var.nodes : name => node.ip }
}

output "nodes" {
  description = "Node name => VM id, address, role and Proxmox node."
  value = {
    for name, vm in proxmox_virtual_environment_vm.node : name => {
      vm_id     = vm.vm_id
      ip        = var.nodes[name].ip
      role      = var.nodes[name].role
      node_name = vm.node_name
    }
  }
}

output "talos_image" {
  description = "Datastore file id and source URL of the Talos nocloud boot image."
  value = {
    file_id = proxmox_download_file.talos.id
    url     = local.talos_image_url
  }
}
