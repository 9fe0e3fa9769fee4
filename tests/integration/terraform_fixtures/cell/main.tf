# Provider-free stand-in for the Proxmox root module (see ../README.md).
terraform {
  required_version = ">= 1.5.0"
  backend "local" {}
}

variable "nodes" {
  description = "Node name => VM id and address."
  type = map(object({
    vm_id = number
    ip    = string
  }))
}

variable "label" {
  description = "Updated in place (no replacement)."
  type        = string
  default     = "v1"
}

variable "token" {
  description = "A secret input; must never show in diffs or outputs."
  type        = string
  sensitive   = true
  default     = "fixture-secret-value"
}

resource "terraform_data" "node" {
  for_each = var.nodes

  # Changing the VM id forces a replacement, like vm_id on proxmox_virtual_environment_vm.
  triggers_replace = each.value.vm_id
  input = {
    ip    = each.value.ip
    label = var.label
    token = var.token
  }
}

output "vm_ids" {
  value = { for name, node in terraform_data.node : name => node.triggers_replace }
}

output "node_ips" {
  value = { for name, node in terraform_data.node : name => node.output.ip }
}

output "token" {
  value     = var.token
  sensitive = true
}
